"""Final usage of an ended billing cycle: what the carrier billed each SIM for the whole cycle, on which plan.

Read through the published calls that take a cycle start date: Get Usage by Rate Plan (one page of SIMs per call,
for every non-shared plan of the catalogue) and, for SIMs on shared (pooled) plans or missing from those pages,
Get Device Usage by Zone one SIM at a time. Written onto the cycle's DeviceUsage rows (final_* fields) in one
transaction at the end: a run that fails leaves every stored row as it was.
"""
from __future__ import annotations

import datetime as dt
import logging
import time
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from carriers import CarrierClient, CarrierRequestRejected
from devices import selectors
from devices.models import Device, DeviceUsage, SyncKind, SyncRun, SyncStatus, billed_in_cycle
from devices.services import (
    ProgressCallback,
    SyncProgress,
    _Beat,
    _run_fail,
    _run_start,
    ask_each_sim,
    record_rejects,
    run_with_client,
)
from devices.signals import final_usage_synced
from devices.usage import bytes_to_mb
from rateplans.cycles import cycle_bounds
from rateplans.models import BillingPeriod, RatePlan, ServiceProvider
from rateplans.services import billing_period_current, billing_period_ending

log = logging.getLogger(__name__)

# Control Center answers Get Device Usage by Zone for "the current billing cycle plus the two preceding cycles".
CARRIER_CYCLES_KEPT = 3
WRITE_BATCH_ROWS = 5_000


def period_before(*, provider: ServiceProvider, period: BillingPeriod) -> BillingPeriod:
    """The account's cycle that ended the day before `period` started."""
    return billing_period_ending(provider=provider, end_date=period.start_date - dt.timedelta(days=1))


def last_ended_period(*, provider: ServiceProvider, now: dt.datetime | None = None) -> BillingPeriod:
    """The most recent cycle of the account that has ended at `now`."""
    return period_before(provider=provider, period=billing_period_current(provider=provider, at=now))


def final_usage_due(*, provider: ServiceProvider, now: dt.datetime | None = None) -> BillingPeriod | None:
    """The ended cycle whose final usage a scheduled sync should read now, or None.

    Due once the cycle has been over for FINAL_USAGE_DELAY_HOURS (the carrier rates late records), while the
    carrier still keeps it, when the cycle has usage rows and none of them has final usage yet (a run that
    failed leaves none, so the next check tries again)."""
    now = now or timezone.now()
    period = last_ended_period(provider=provider, now=now)
    if now < period.ends_at() + dt.timedelta(hours=settings.FINAL_USAGE_DELAY_HOURS):
        return None
    rows = DeviceUsage.objects.filter(billing_period=period)
    if not rows.exists() or rows.filter(final_synced_at__isnull=False).exists():
        return None
    return period


def _carrier_keeps(*, provider: ServiceProvider, period: BillingPeriod, now: dt.datetime) -> bool:
    start = cycle_bounds(now.astimezone(provider.tz).date(), provider.billing_cycle_end_day)[0]
    for _ in range(CARRIER_CYCLES_KEPT - 1):
        start = cycle_bounds(start - dt.timedelta(days=1), provider.billing_cycle_end_day)[0]
    return period.start_date >= start


def final_usage_sync(*, provider: ServiceProvider, period: BillingPeriod | None = None,
                     client: CarrierClient | None = None, now: dt.datetime | None = None,
                     progress: ProgressCallback | None = None) -> SyncRun:
    """Read the final usage of the ended cycle `period` (default: the last ended one) into its DeviceUsage rows.

    Asked about: every SIM with a usage row of the cycle, and every SIM the carrier billed in it (activated
    before it ended). A SIM the carrier reports no usage for is listed in the run's rejects and keeps no final
    usage (it is never taken as 0). `now` is when the run happens (tests move it past the cycle's end).
    """
    started = time.monotonic()
    now = now or timezone.now()
    run = _run_start(provider=provider, kind=SyncKind.FINAL_USAGE, modified_since=None,
                     exclusive_kinds=[SyncKind.FINAL_USAGE])
    if run.status == SyncStatus.FAILED:
        return run
    period = period or last_ended_period(provider=provider, now=now)
    if now < period.ends_at():
        return _run_fail(run, f"period: billing period {period} of {provider.name!r} has not ended yet (it ends "
                              f"{period.ends_at():%Y-%m-%d %H:%M %Z}); its final usage is not known. DeviceUsage "
                              f"unchanged.", started=started)
    if not _carrier_keeps(provider=provider, period=period, now=now):
        return _run_fail(run, f"period: billing period {period} of {provider.name!r} is older than the "
                              f"{CARRIER_CYCLES_KEPT} cycles the carrier answers for; its final usage cannot be read. "
                              f"DeviceUsage unchanged.", started=started)
    return run_with_client(
        run=run, provider=provider, client=client, started=started,
        doing=f"reading the final usage of {period} (sync #{run.pk})", kept=lambda: "DeviceUsage unchanged.",
        body=lambda c: _final_usage_run(run=run, provider=provider, period=period, client=c, progress=progress,
                                        started=started))


def final_usage_devices(*, provider: ServiceProvider, period: BillingPeriod) -> dict[str, int]:
    """ICCID -> device id of the SIMs whose final usage of `period` is wanted."""
    with_rows = Q(usages__billing_period=period)
    billed = billed_in_cycle(cycle_start=period.starts_at()) & (
        Q(date_activated__isnull=True) | Q(date_activated__lt=period.ends_at()))
    return dict(Device.objects.filter(with_rows | billed, provider=provider).distinct()
                .values_list("iccid", "pk"))


def _final_usage_run(*, run: SyncRun, provider: ServiceProvider, period: BillingPeriod, client: CarrierClient,
                     progress: ProgressCallback | None, started: float) -> SyncRun:
    wanted = final_usage_devices(provider=provider, period=period)
    beat = _Beat(run)  # a run whose heartbeat stops is taken over (devices.services._run_start)
    cycle_start = period.start_date
    found: dict[str, tuple[int, str | None]] = {}  # iccid -> (bytes, plan the carrier billed the cycle on)
    problems: dict[str, str] = {}
    pages = 0
    # Shared rate plans are not supported by Get Usage by Rate Plan: their SIMs are asked one by one below.
    for code in RatePlan.objects.filter(provider=provider, pooled=False).order_by("code").values_list("code", flat=True):
        try:
            for page in client.iter_rate_plan_usages(rate_plan=code, cycle_start=cycle_start):
                pages += 1
                for usage in page.usages:
                    if usage.iccid in wanted:
                        found[usage.iccid] = (usage.data_bytes, usage.rate_plan)
                for problem in page.problems:
                    log.info("final usage of %s: %s", period, problem)
                beat()
                if progress:
                    progress(SyncProgress(kind="final_usage", done=len(found), total=len(wanted), seen=len(found),
                                          retries=client.stats.retries))
        except CarrierRequestRejected as exc:
            # The carrier does not page this plan (shared after all?): its SIMs are asked one by one.
            log.info("final usage of %s: %s", period, exc.message)
    run.pages = pages

    def step(_failing: int) -> None:
        beat()
        if progress:
            progress(SyncProgress(kind="final_usage", done=len(found), total=len(wanted), seen=len(found),
                                  retries=client.stats.retries))

    def keep(iccid: str, answer) -> None:
        found[iccid] = (answer.data_bytes, answer.rate_plan)

    problems, asked_again = ask_each_sim(
        sorted(set(wanted) - set(found)), lambda ask: client.iter_cycle_usages(ask, cycle_start=cycle_start),
        on_answer=keep, after_each=step)
    run.devices_seen = len(found) + len(problems)
    rejects = record_rejects(run, failed=problems, client=client, asked_again=asked_again)
    if rejects:
        shown = ", ".join(r["iccid"] for r in rejects[:20])
        run.error = (f"no final usage of {period} for {len(rejects):,} SIM(s): {shown}{' …' if len(rejects) > 20 else ''} "
                     f"(all listed in rejects); realized savings list them as missing, never as 0 MB")

    stamp = timezone.now()
    ends_at = period.ends_at()
    ids = {iccid: wanted[iccid] for iccid in found}
    merge_started = time.monotonic()
    with transaction.atomic():
        beat(force=True)  # still this run's claim: one taken over writes nothing
        before = selectors.usage_rows_count(provider=provider, period=period)
        rows = []
        for iccid, (data_bytes, plan) in found.items():
            mb = Decimal(f"{bytes_to_mb(data_bytes):.3f}")
            # A SIM without a row of the cycle gets one (its cycle usage is now known exactly); a row that exists
            # keeps what the syncs of the cycle stored and gains only the final_* fields.
            rows.append(DeviceUsage(device_id=ids[iccid], billing_period=period, ctd_bytes=data_bytes, usage_mb=mb,
                                    projected_mb=mb, usage_date=ends_at, final_bytes=data_bytes, final_mb=mb,
                                    final_rate_plan_code=(plan or "")[:120], final_synced_at=stamp))
        DeviceUsage.objects.bulk_create(
            rows, batch_size=WRITE_BATCH_ROWS, update_conflicts=True, unique_fields=["device", "billing_period"],
            update_fields=["final_bytes", "final_mb", "final_rate_plan_code", "final_synced_at"])
        run.inserted = selectors.usage_rows_count(provider=provider, period=period) - before
        run.updated = len(rows) - run.inserted
        run.status = SyncStatus.SUCCEEDED
        run.finished_at = timezone.now()
        run.merge_seconds = time.monotonic() - merge_started
        run.duration_seconds = time.monotonic() - started
        run.save()
        transaction.on_commit(lambda: final_usage_synced.send(sender=SyncRun, sync_run=run, provider=provider,
                                                              period=period))
    log.info("final usage sync #%s of provider %s for %s: %s SIMs (%s rejected), %s pages, %s calls in %.1fs",
             run.pk, provider.pk, period, len(found), run.rejected, pages, run.calls, run.duration_seconds)
    return run
