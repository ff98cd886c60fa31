"""Writes of the SIM sync: device_sync (carrier -> staging -> Device in one transaction) and usage_sync."""
from __future__ import annotations

import datetime as dt
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from carrieropt.errors import ApplicationError
from carriers import (
    BYTES_PER_MB,
    MAX_PAGE_SIZE,
    CarrierAccountError,
    CarrierClient,
    CarrierError,
    CarrierRequestRejected,
    DeviceRecord,
)
from devices import selectors, staging
from devices.alerts import carrier_error_alert
from devices.clients import client_for
from devices.models import STOPPED_STATUSES, DeviceStaging, DeviceStatus, SyncKind, SyncRun, SyncStatus
from devices.signals import device_sync_completed, device_sync_starting
from devices.usage import bytes_to_mb, projected_mb
from rateplans.models import BillingPeriod, RatePlan, ServiceProvider
from rateplans.services import billing_period_current

log = logging.getLogger(__name__)

# The legacy listed SIMs changed in the last month and a day and called that "full"; SIMs
# unchanged for longer were never re-read. A full sync here asks for every change since this date.
FULL_SYNC_SINCE = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
# Clock skew between carrieropt and the carrier must not lose a change: the next incremental
# sync starts this much before the previous one did (re-reading a SIM is harmless).
WATERMARK_OVERLAP = dt.timedelta(minutes=5)
STAGING_BATCH_ROWS = 2_000
REJECTS_KEPT = 1_000
# A sync that stopped part-way is resumed by the next one started within this time.
RESUME_WITHIN = dt.timedelta(hours=24)
USAGE_CHUNK_ROWS = 5_000
# errorCode of 'the API user's role has no access to this function' (carriers/errors.py).
NO_ACCESS_CODE = "10000030"
# The optimizer prices the SIMs billed this cycle (models.billed_in_cycle: ACTIVATED, and those deactivated or
# retired during it); asking the carrier for the usage of any other SIM spends its 5 calls/s on numbers nobody reads.
USAGE_STATUSES = (DeviceStatus.ACTIVATED, *STOPPED_STATUSES)
ICCID_RE = re.compile(r"^\d{19,20}$")
KNOWN_STATUSES = frozenset(DeviceStatus.values)
NEW_COMM_PLANS_SUBJECT = "New Communication Plans Added"
SUMMARY_SUBJECT = "Device Sync Summary"


@dataclass(frozen=True)
class SyncProgress:
    """Reported to `progress` after each device-list page and every few usage answers."""

    kind: str  # "devices" or "usage"
    done: int  # pages read, or SIMs whose usage arrived
    total: int | None  # usage: SIMs to ask about; devices: unknown until the last page
    seen: int  # SIMs seen so far
    retries: int


ProgressCallback = Callable[[SyncProgress], None]


def full_sync_every() -> dt.timedelta:
    return dt.timedelta(days=settings.DEVICE_FULL_SYNC_DAYS)


class SyncTakenOver(ApplicationError):
    """This sync's claim was taken over (its heartbeat looked dead, or a session's sync took over a background
    one); it stops at once and writes nothing more: the sync that took over resumes from its checkpoint."""


def _run_start(*, provider: ServiceProvider, kind: str, modified_since: dt.datetime | None,
               exclusive_kinds: Iterable[str], background: bool = False) -> SyncRun:
    """Create the run; refuse (as a failed run) while another of the same family is running.

    A running sync whose heartbeat is older than STAGE_STALL_SECONDS (its worker died) is marked failed
    and does not block: the new run resumes from its checkpoint. A background sync yields to any other
    sync of the account (a session's), and is refused while a higher layer says so (a push, a session).
    """
    now = timezone.now()
    kinds = list(exclusive_kinds)
    with transaction.atomic():
        ServiceProvider.objects.select_for_update().filter(pk=provider.pk).first()
        stall = dt.timedelta(seconds=settings.STAGE_STALL_SECONDS)
        running = SyncRun.objects.filter(provider=provider, kind__in=kinds, status=SyncStatus.RUNNING)
        running.filter(Q(heartbeat_at__lt=now - stall) | Q(heartbeat_at=None, started_at__lt=now - stall)).update(
            status=SyncStatus.FAILED, finished_at=now,
            error=f"stopped: no heartbeat for more than {settings.STAGE_STALL_SECONDS} s (its worker died?); "
                  f"the next sync resumes from its checkpoint")
        busy = selectors.sync_runs_running(provider=provider, kinds=kinds)
        # A higher layer may hold the account's rate limit (a rate-plan push does).
        refusals = [reason for _, reason in device_sync_starting.send(sender=SyncRun, provider=provider,
                                                                      background=background) if reason]
        run = SyncRun.objects.create(provider=provider, kind=kind, modified_since=modified_since, heartbeat_at=now,
                                     background=background)
        if busy and not background and all(b.background for b in busy):
            SyncRun.objects.filter(pk__in=[b.pk for b in busy], status=SyncStatus.RUNNING).update(
                status=SyncStatus.FAILED, finished_at=now,
                error=f"taken over by sync #{run.pk}, which resumes from this one's checkpoint")
            busy = []
        if busy:
            _run_fail(run, f"sync #{busy[0].pk} of this account is still running (started {busy[0].started_at:%Y-%m-%d %H:%M:%S %Z}); "
                           f"nothing was read or changed", started=time.monotonic())
        elif refusals:
            _run_fail(run, refusals[0], started=time.monotonic())
    return run


class _Beat:
    """The run's heartbeat, at most every STAGE_HEARTBEAT_SECONDS (or forced, with a checkpoint, before each
    commit). It also proves the run still owns its claim: once it was taken over, SyncTakenOver stops it."""

    def __init__(self, run: SyncRun):
        self.run, self.last = run, time.monotonic()

    def __call__(self, *, force: bool = False, **checkpoint) -> None:
        if not force and time.monotonic() - self.last < settings.STAGE_HEARTBEAT_SECONDS:
            return
        self.last = time.monotonic()
        now = timezone.now()
        if not SyncRun.objects.filter(pk=self.run.pk, status=SyncStatus.RUNNING).update(heartbeat_at=now, **checkpoint):
            taken = SyncRun.objects.filter(pk=self.run.pk).values_list("error", flat=True).first()
            raise SyncTakenOver(f"sync #{self.run.pk} stopped: {taken or 'it is no longer running'}")
        self.run.heartbeat_at = now
        for name, value in checkpoint.items():
            setattr(self.run, name, value)


def _taken_over(run: SyncRun, exc: SyncTakenOver, client: CarrierClient | None) -> SyncRun:
    log.warning("%s sync #%s of provider %s: %s", run.kind, run.pk, run.provider_id, exc.message)
    run.refresh_from_db()
    return run


def _record_client_stats(run: SyncRun, client: CarrierClient) -> None:
    """What the carrier client did, on the run: calls, retries, throttled answers, the calls/s it achieved."""
    stats = client.stats
    run.calls, run.retries, run.throttled = stats.calls, stats.retries, stats.throttled
    run.calls_per_second = stats.calls_per_second


def _run_fail(run: SyncRun, message: str, *, started: float, client: CarrierClient | None = None) -> SyncRun:
    run.status = SyncStatus.FAILED
    run.error = message
    run.finished_at = timezone.now()
    run.duration_seconds = time.monotonic() - started
    if client is not None:
        _record_client_stats(run, client)
    run.save()
    log.warning("%s sync #%s of provider %s failed: %s", run.kind, run.pk, run.provider_id, message)
    return run


def _stage_row(record: DeviceRecord, *, page: int, provider_id: int, run_id: int,
               rate_plans: set[str]) -> tuple[tuple | None, str]:
    """(staging row, reject reason). No row when the ICCID itself is unusable: nothing could match it."""
    iccid = (record.iccid or "").strip()
    if not ICCID_RE.match(iccid):
        return None, record.problem or (f"iccid {record.iccid!r} is not 19-20 digits" if record.iccid else "iccid is missing")
    status, plan, comm = (record.status or "").strip(), (record.rate_plan or "").strip(), (record.communication_plan or "").strip()
    reason = record.problem
    if not reason:
        if not status:
            reason = "status is missing"
        elif status not in KNOWN_STATUSES:
            reason = f"status {status!r} is not a SIM status carrieropt knows"
        elif not plan:
            reason = "ratePlan is missing"
        elif plan not in rate_plans:
            # Unknown plans are rejected, not created: a plan without prices cannot be optimized, and
            # inventing prices would be worse. The SIM still counts as seen (it is not marked missing).
            reason = f"ratePlan {plan!r} is not in this account's catalogue; add it, then sync again"
        elif not comm:
            reason = "communicationPlan is missing"
        elif len(comm) > 200:
            reason = "communicationPlan is longer than 200 characters"
        elif record.msisdn and len(record.msisdn) > 20:
            reason = f"msisdn {record.msisdn!r} is longer than 20 characters"
    customer = None if record.customer is None else record.customer.strip()[:200]
    row = (provider_id, run_id, iccid, status[:20], plan[:120], comm[:200], (record.msisdn or "")[:20],
           record.date_activated, record.date_added, record.date_updated, page, reason[:300], customer)
    return row, reason


def run_with_client(*, run: SyncRun, provider: ServiceProvider, client: CarrierClient | None, started: float,
                    body: Callable[[CarrierClient], SyncRun], doing: str, kept: Callable[[], str],
                    before_fail: Callable[[], None] = lambda: None) -> SyncRun:
    """Run a sync's `body` with the account's client (or `client`, for tests; closed here only when built here).

    A taken-over run stops quietly; a carrier or application error fails the run (saying what was kept, `kept()`)
    and alerts the account about `doing`; anything else fails the run and is raised."""
    own_client = client is None
    try:
        client = client or client_for(provider)
    except ApplicationError as exc:
        return _run_fail(run, exc.message, started=started)
    try:
        return body(client)
    except SyncTakenOver as exc:
        return _taken_over(run, exc, client)
    except (CarrierError, ApplicationError) as exc:
        before_fail()
        failed = _run_fail(run, f"{exc.message} {kept()}", started=started, client=client)
        carrier_error_alert(provider=provider, exc=exc, doing=doing)
        return failed
    except Exception as exc:
        before_fail()
        _run_fail(run, f"unexpected {type(exc).__name__}: {exc}. {kept()}", started=started, client=client)
        raise
    finally:
        if own_client:
            client.close()


def device_sync(*, provider: ServiceProvider, full: bool | None = None, progress: ProgressCallback | None = None,
                client: CarrierClient | None = None, background: bool = False) -> SyncRun:
    """Read the carrier's SIMs into staging, then merge them into Device in one transaction.

    full=None decides: a full sync when there has been none or the last full one is older than
    DEVICE_FULL_SYNC_DAYS (default 7), else incremental from the last watermark. A full sync
    also marks SIMs the carrier no longer reports as missing. Any failure before or during the
    merge leaves Device exactly as it was; the run records why. Staging is committed in chunks
    with a checkpoint (the last page staged): a sync that stopped part-way (its worker died, or
    the carrier failed) in the last RESUME_WITHIN is resumed by the next one, from the page
    after its checkpoint, with the same modifiedSince. `client` is for tests (short timeouts);
    by default the account's own client is built and closed here.
    """
    started = time.monotonic()
    watermark = selectors.device_sync_watermark(provider=provider)
    last_full = selectors.sync_run_latest(provider=provider, kinds=[SyncKind.FULL])
    due = last_full is None or last_full.started_at < timezone.now() - full_sync_every()
    is_full = True if full else (watermark is None or (full is None and due))
    kind = SyncKind.FULL if is_full else SyncKind.INCREMENTAL
    since = FULL_SYNC_SINCE if is_full else watermark
    run = _run_start(provider=provider, kind=kind, modified_since=since, exclusive_kinds=selectors.DEVICE_SYNC_KINDS,
                     background=background)
    if run.status == SyncStatus.FAILED:
        return run
    return run_with_client(
        run=run, provider=provider, client=client, started=started, doing=f"syncing devices (sync #{run.pk})",
        kept=lambda: "Device table unchanged.", before_fail=lambda: _forget_merge(run),
        body=lambda c: _device_sync_run(run=run, provider=provider, client=c, since=since, progress=progress,
                                        started=started))


def _forget_merge(run: SyncRun) -> None:
    """A merge that rolled back changed nothing; its counts must not say otherwise. The SIMs seen and rejected
    are those its last checkpoint covers (what a resume continues from), not the totals computed for the merge
    (which count the staged rejects twice once resumed)."""
    run.refresh_from_db(fields=["devices_seen", "rejected", "rejects"])
    run.inserted = run.updated = run.missing = 0
    run.new_communication_plans = []
    run.watermark = None
    run.merge_seconds = None


def _device_sync_resumable(*, run: SyncRun, since: dt.datetime) -> SyncRun | None:
    """The device sync this one continues: the newest one of the account, started within RESUME_WITHIN and
    after the last successful one, that stopped with SIMs staged, and read at least what this one must
    (its modifiedSince is not later than ours)."""
    latest_ok = selectors.sync_run_latest(provider=run.provider)
    stopped = (SyncRun.objects.filter(provider_id=run.provider_id, kind__in=list(selectors.DEVICE_SYNC_KINDS),
                                      status=SyncStatus.FAILED, checkpoint_page__gt=0,
                                      started_at__gte=run.started_at - RESUME_WITHIN, started_at__lt=run.started_at)
               .exclude(pk=run.pk).order_by("-started_at").first())
    if stopped is None or (latest_ok is not None and latest_ok.started_at > stopped.started_at):
        return None
    if stopped.modified_since is None or stopped.modified_since > since:
        return None
    if not DeviceStaging.objects.filter(sync_run=stopped).exists():
        return None
    return stopped


def _origin_started_at(run: SyncRun) -> dt.datetime:
    """When the first sync of a resumed chain started: the watermark must not pass it."""
    seen = {run.pk}
    while run.resumed_from_id is not None and run.resumed_from_id not in seen:
        seen.add(run.resumed_from_id)
        run = SyncRun.objects.get(pk=run.resumed_from_id)
    return run.started_at


def _device_sync_run(*, run: SyncRun, provider: ServiceProvider, client: CarrierClient, since: dt.datetime,
                     progress: ProgressCallback | None, started: float) -> SyncRun:
    rate_plans = set(RatePlan.objects.filter(provider=provider).values_list("code", flat=True))
    beat = _Beat(run)
    buffer: dict[str, tuple] = {}
    bad_iccids: list[dict] = []
    bad_iccid_count = received = 0
    first_page = 1
    resumed = _device_sync_resumable(run=run, since=since)
    if resumed is not None:
        # Continue the stopped sync: its staged SIMs become ours and paging goes on after its checkpoint,
        # with its modifiedSince and kind (a full sync resumed stays full).
        since, first_page = resumed.modified_since, resumed.checkpoint_page + 1
        received, bad_iccid_count, bad_iccids = resumed.devices_seen - resumed.rejected, resumed.rejected, list(resumed.rejects)
        with transaction.atomic():
            DeviceStaging.objects.filter(sync_run=resumed).update(sync_run=run)
            run.kind, run.modified_since, run.resumed_from = resumed.kind, since, resumed
            run.pages, run.checkpoint_page = resumed.checkpoint_page, resumed.checkpoint_page
            # The counts its checkpoint covers are ours from now on: a run that stops before its own first
            # checkpoint (the carrier fails again on the next page) must hand them on, not zeros.
            run.devices_seen, run.rejected, run.rejects = resumed.devices_seen, resumed.rejected, list(resumed.rejects)
            run.save(update_fields=["kind", "modified_since", "resumed_from", "pages", "checkpoint_page",
                                    "devices_seen", "rejected", "rejects"])
        log.info("device sync #%s of provider %s resumes sync #%s after page %s", run.pk, provider.pk, resumed.pk,
                 resumed.checkpoint_page)
    else:
        staging.staging_clear(provider_id=provider.pk)

    def flush(page: int) -> None:
        # The checkpoint and the rows it covers commit together, and only while this run owns its claim.
        with transaction.atomic():
            beat(force=True, checkpoint_page=page, pages=run.pages, devices_seen=received + bad_iccid_count,
                 rejected=bad_iccid_count, rejects=bad_iccids)
            staging.staging_write(rows=list(buffer.values()))
        buffer.clear()

    page_number = first_page - 1
    for page in client.iter_device_pages(modified_since=since, first_page=first_page):
        page_number = page.page_number
        for record in page.devices:
            row, reason = _stage_row(record, page=page.page_number, provider_id=provider.pk, run_id=run.pk,
                                     rate_plans=rate_plans)
            if row is None:
                bad_iccid_count += 1
                if len(bad_iccids) < REJECTS_KEPT:
                    bad_iccids.append({"iccid": record.iccid, "page": page.page_number, "reason": reason})
                continue
            received += 1
            # Oldest change first, so the last row seen for an ICCID is its newest state.
            buffer.pop(row[2], None)
            buffer[row[2]] = row
        run.pages += 1
        if len(buffer) >= STAGING_BATCH_ROWS:
            flush(page.page_number)
        else:
            beat()
        if progress:
            progress(SyncProgress(kind="devices", done=run.pages, total=None, seen=received + bad_iccid_count,
                                  retries=client.stats.retries))
    flush(page_number)
    customer_problems = _customers_read(run=run, client=client, progress=progress, beat=beat)

    staged, staged_rejects = staging.staging_counts(run_id=run.pk)
    run.duplicates = received - staged
    run.devices_seen = staged + bad_iccid_count
    run.rejected = staged_rejects + bad_iccid_count
    run.rejects = bad_iccids + staging.staging_rejects(run_id=run.pk, limit=max(0, REJECTS_KEPT - len(bad_iccids)))
    # A SIM seen twice means the carrier's list moved while it was paged (a changed SIM jumps to
    # the end), and an offset-paged list that moves can also skip a SIM. So this run neither marks
    # SIMs missing nor advances the watermark: the next sync reads the same window again.
    consistent = run.duplicates == 0
    # Rejected SIMs (e.g. on a plan not yet in the catalogue) must be read again once the
    # cause is fixed, and an incremental sync only lists what changed since the watermark:
    # so a run with rejects keeps the old watermark too (until the next full sync at the latest).
    # A resumed run's window began when the first run of its chain started.
    run.watermark = (_origin_started_at(run) - WATERMARK_OVERLAP) if consistent and not run.rejected else since
    _record_client_stats(run, client)

    merge_started = time.monotonic()
    now = timezone.now()
    with transaction.atomic():
        ServiceProvider.objects.select_for_update().filter(pk=provider.pk).first()
        beat(force=True)
        counts = staging.staging_merge(provider_id=provider.pk, run_id=run.pk, now=now,
                                       mark_missing=run.kind == SyncKind.FULL and consistent,
                                       all_listed_changed=run.kind == SyncKind.INCREMENTAL)
        run.inserted, run.updated, run.missing = counts.inserted, counts.updated, counts.missing
        run.new_communication_plans = counts.new_communication_plans
        run.status = SyncStatus.SUCCEEDED
        run.finished_at = timezone.now()
        run.merge_seconds = time.monotonic() - merge_started
        run.duration_seconds = time.monotonic() - started
        if customer_problems:
            run.error = customer_problems
        if not consistent:
            run.error = (f"{run.duplicates} SIM(s) appeared on two pages: the list changed while it was read; "
                         f"kept the newest row of each, did not mark missing SIMs, kept the watermark at {since:%Y-%m-%d %H:%M:%S %Z}")
        run.save()
        ServiceProvider.objects.filter(pk=provider.pk).update(last_device_sync_at=run.started_at)
        device_sync_completed.send(sender=SyncRun, sync_run=run, provider=provider)
        transaction.on_commit(lambda: _device_sync_emails(run=run, provider=provider))
    provider.last_device_sync_at = run.started_at
    log.info("device sync #%s of provider %s: %s pages, %s seen, +%s ~%s missing %s rejected %s in %.1fs",
             run.pk, provider.pk, run.pages, run.devices_seen, run.inserted, run.updated, run.missing, run.rejected,
             run.duration_seconds)
    return run


def _customers_read(*, run: SyncRun, client: CarrierClient, progress: ProgressCallback | None, beat) -> str:
    """The customer of each staged SIM that needs it (new, changed, never read), from Get Device Details, onto
    staging. A SIM whose details call failed keeps its last known customer and is read again next time; an
    error about the account (credentials, carrier down) fails the sync like a failed device page.
    Returns what to say on the run about SIMs not read ("" when every one was)."""
    limit = settings.DEVICE_SYNC_CUSTOMER_READS
    if not limit:
        return ""
    iccids = staging.staging_customers_to_read(run_id=run.pk, limit=limit + 1,
                                               all_listed=run.kind == SyncKind.INCREMENTAL)
    later = len(iccids) > limit
    iccids = iccids[:limit]
    found: dict[str, str] = {}
    failed: list[str] = []
    every = max(1, len(iccids) // 100)
    for iccid, answer in client.iter_device_details(iccids):
        if isinstance(answer, CarrierError):
            failed.append(iccid)
        else:
            found[iccid] = answer.customer[:200]
        done = len(found) + len(failed)
        beat()
        if progress and (done % every == 0 or done == len(iccids)):
            progress(SyncProgress(kind="customers", done=done, total=len(iccids), seen=done,
                                  retries=client.stats.retries))
    with transaction.atomic():
        staging.staging_customers_write(provider_id=run.provider_id, run_id=run.pk, customers=found)
    problems = []
    if failed:
        problems.append(f"customer of {len(failed):,} SIM(s) not read (Get Device Details failed: "
                        f"{', '.join(sorted(failed)[:10])}{' …' if len(failed) > 10 else ''}); read again next sync")
    if later:
        problems.append(f"customers of more than DEVICE_SYNC_CUSTOMER_READS={limit:,} new or changed SIMs: "
                        f"the rest are read by the next syncs")
    return "; ".join(problems)


def _send(subject: str, body: str, provider: ServiceProvider) -> None:
    recipients = provider.alert_recipients
    if not recipients:
        return
    try:
        send_mail(subject, body, None, recipients)
    except Exception:
        # The sync is committed; a mail server problem must not turn it into a failure.
        log.exception("could not send %r for provider %s", subject, provider.pk)


def _device_sync_emails(*, run: SyncRun, provider: ServiceProvider) -> None:
    if run.new_communication_plans:
        names = "\n".join(f"  - {name}" for name in run.new_communication_plans)
        _send(NEW_COMM_PLANS_SUBJECT,
              f"The carrier reported communication plans not seen before on {provider.name} "
              f"(sync #{run.pk}). They were added without allowed rate plans; choose their rate plans "
              f"before the next optimization:\n{names}\n", provider)
    usage_at = provider.last_usage_sync_at
    lines = [
        f"Carrier account: {provider.name} ({provider.integration})",
        f"Sync #{run.pk}: {run.get_kind_display().lower()}, modifiedSince {run.modified_since:%Y-%m-%d %H:%M:%S %Z}",
        f"Pages read: {run.pages:,}; HTTP calls: {run.calls:,} (retries: {run.retries:,})",
        f"SIMs seen: {run.devices_seen:,}",
        f"Added: {run.inserted:,}",
        f"Changed: {run.updated:,}",
        f"Marked missing: {run.missing:,}",
        f"Rejected: {run.rejected:,}",
        f"Duplicates dropped: {run.duplicates:,}",
        f"Last device sync: {run.started_at:%Y-%m-%d %H:%M:%S %Z}",
        f"Last usage sync: {usage_at:%Y-%m-%d %H:%M:%S %Z}" if usage_at else "Last usage sync: never",
    ]
    if run.error:
        lines.append(f"Note: {run.error}")
    if run.rejects:
        lines.append("First rejects:")
        lines += [f"  {r['iccid']} (page {r['page']}): {r['reason']}" for r in run.rejects[:20]]
    _send(f"{SUMMARY_SUBJECT}: {provider.name}", "\n".join(lines) + "\n", provider)


def ask_each_sim(ask: Iterable[str], call: Callable[[Iterable[str]], Iterator[tuple[str, object]]], *,
                 on_answer: Callable[[str, object], None], after_each: Callable[[int], None]) -> tuple[dict[str, str], int]:
    """Ask the carrier about each ICCID of `ask` through `call` (a client's iter_ctd_usages or iter_cycle_usages).

    A SIM whose call failed is asked again, after every other SIM, USAGE_RETRY_ROUNDS more times; only what still
    fails is returned, {ICCID: why}, with how many SIMs were asked again. `after_each(failing)` runs after every
    answer, with the number failing so far in this round."""
    failed: dict[str, str] = {}
    asked_again = 0
    for round_ in range(1 + settings.USAGE_RETRY_ROUNDS):
        failed = {}
        for iccid, answer in call(ask):
            if isinstance(answer, CarrierError):
                failed[iccid] = answer.message
            else:
                on_answer(iccid, answer)
            after_each(len(failed))
        if not failed:
            break
        if round_ < settings.USAGE_RETRY_ROUNDS:
            asked_again += len(failed)
        ask = sorted(failed)
    return failed, asked_again


def record_rejects(run: SyncRun, *, failed: dict[str, str], client: CarrierClient, asked_again: int) -> list[dict]:
    """The SIMs still failing after ask_each_sim, on the run by ICCID, with what the client did."""
    rejects = [{"iccid": iccid, "page": None, "reason": reason} for iccid, reason in sorted(failed.items())]
    run.rejected = len(rejects)
    run.rejects = rejects[:REJECTS_KEPT]
    _record_client_stats(run, client)
    run.retries += asked_again
    return rejects


def usage_sync(*, provider: ServiceProvider, period: BillingPeriod | None = None,
               progress: ProgressCallback | None = None, client: CarrierClient | None = None,
               statuses: Iterable[str] | None = None, fresh_since: dt.datetime | None = None,
               background: bool = False) -> SyncRun:
    """Cycle-to-date usage of the account's SIMs into DeviceUsage for the current billing period.

    One ctdUsages call per SIM (Control Center v1 has no bulk usage call that covers pooled
    plans), under the account's token bucket and concurrency cap. Only SIMs with a status in
    `statuses` are asked about (default None: the SIMs the carrier bills this cycle, see
    models.billed_in_cycle). A SIM whose usage row of this period was stored at or after
    `fresh_since` is not asked again (a top-up); nor, after a usage sync of the period that
    stopped part-way in the last RESUME_WITHIN, is one it already stored (a resume). A SIM whose
    call failed is asked again up to USAGE_RETRY_ROUNDS times; the rest are listed in `rejects`.
    Rows are committed every USAGE_CHUNK_ROWS answers: each is a whole carrier measurement, so a
    run that stops keeps what it measured and every row stored before it stays intact.
    """
    started = time.monotonic()
    statuses = None if statuses is None else list(statuses)
    run = _run_start(provider=provider, kind=SyncKind.USAGE, modified_since=None, exclusive_kinds=[SyncKind.USAGE],
                     background=background)
    if run.status == SyncStatus.FAILED:
        return run
    now = timezone.now()
    period = period or billing_period_current(provider=provider, at=now)
    if not period.starts_at() <= now < period.ends_at():
        return _run_fail(run, f"period: billing period {period} of {provider.name!r} is not the current one; the "
                              f"carrier reports only the current cycle to date. DeviceUsage unchanged.", started=started)
    return run_with_client(
        run=run, provider=provider, client=client, started=started, doing=f"syncing usage (sync #{run.pk})",
        kept=lambda: _usage_kept(run),
        body=lambda c: _usage_sync_run(run=run, provider=provider, period=period, client=c, statuses=statuses,
                                       progress=progress, started=started, fresh_since=fresh_since))


def _usage_kept(run: SyncRun) -> str:
    kept = getattr(run, "usage_rows_committed", 0)
    if not kept:
        return "DeviceUsage unchanged."
    return (f"{kept:,} usage rows committed before it are kept (whole carrier answers); the next usage sync "
            f"resumes after them.")


def _usage_resume_since(*, run: SyncRun) -> dt.datetime | None:
    """The start of the usage sync this one continues (it stopped part-way in the last RESUME_WITHIN, after the
    last successful one): rows it stored carry that time, and are not asked for again."""
    latest_ok = selectors.sync_run_latest(provider=run.provider, kinds=[SyncKind.USAGE])
    stopped = (SyncRun.objects.filter(provider_id=run.provider_id, kind=SyncKind.USAGE, status=SyncStatus.FAILED,
                                      started_at__gte=run.started_at - RESUME_WITHIN, started_at__lt=run.started_at)
               .exclude(pk=run.pk).order_by("-started_at").first())
    if stopped is None or (latest_ok is not None and latest_ok.started_at > stopped.started_at):
        return None
    return stopped.started_at


def _usage_sync_run(*, run: SyncRun, provider: ServiceProvider, period: BillingPeriod, client: CarrierClient,
                    statuses: list[str] | None, progress: ProgressCallback | None, started: float,
                    fresh_since: dt.datetime | None) -> SyncRun:
    beat = _Beat(run)
    devices = selectors.usage_sync_devices(provider=provider, statuses=statuses or USAGE_STATUSES,
                                           cycle_start=period.starts_at() if statuses is None else None)
    resume_since = _usage_resume_since(run=run)
    if resume_since is not None:
        stopped = SyncRun.objects.filter(provider=provider, kind=SyncKind.USAGE, started_at=resume_since).first()
        run.resumed_from = stopped
        run.save(update_fields=["resumed_from"])
    # A caller's fresh_since is the bound: a resumed run's rows older than it are stale to the caller too.
    skip_since = fresh_since if fresh_since is not None else resume_since
    fresh = selectors.usage_stored_since(provider=provider, period=period, since=skip_since) if skip_since else set()
    by_iccid = {iccid: (pk, status) for pk, iccid, status, _, _ in devices if pk not in fresh}
    # Get Usage by Rate Plan answers 50 SIMs a call ("cycle-to-date usage for all devices using" the plan). A SIM
    # whose plan a sync or a push saw change this cycle is asked on its own: the carrier reports a cycle's usage
    # per rate plan (usageInZone), and whether /usages counts the part before the change is not documented.
    # A plan is paged only when that takes fewer calls than asking its wanted SIMs one by one (a top-up of a few).
    by_plan: dict[str, set[str]] = {}
    on_plan: dict[str, int] = {}
    for _pk, iccid, _status, plan, plan_changed in devices:
        on_plan[plan] = on_plan.get(plan, 0) + 1
        if iccid in by_iccid and plan and (plan_changed is None or plan_changed < period.starts_at()):
            by_plan.setdefault(plan, set()).add(iccid)
    # The call does not serve shared plans (the catalogue's pooled ones): not asked, as a refusal would only cost a
    # call; a plan the catalogue does not know as shared that the carrier refuses is asked SIM by SIM below.
    shared = selectors.pooled_plan_codes(provider=provider)
    by_plan = {plan: sims for plan, sims in by_plan.items()
               if plan not in shared and -(-on_plan[plan] // MAX_PAGE_SIZE) + 1 < len(sims)}
    run.skipped = provider.devices.filter(missing_since__isnull=True).count() - len(by_iccid)
    period_start, period_end = period.starts_at(), period.ends_at()
    rows: list[tuple] = []
    failed: dict[str, str] = {}
    every = max(1, len(by_iccid) // 200)
    before = selectors.usage_rows_count(provider=provider, period=period)
    stored = 0
    # The stamp says which sync stored the row: a session prices only usage of its cycle stored
    # by a sync no older than USAGE_MAX_AGE_HOURS (the carrier's measurement time is usage_date).
    stamp = run.started_at

    def flush() -> None:
        nonlocal stored
        with transaction.atomic():
            beat(force=True)
            staging.usage_write(rows=rows[stored:])
        stored = run.usage_rows_committed = len(rows)

    def stored_row(iccid: str, ctd_bytes: int, status: str | None, measured_at: dt.datetime) -> None:
        device_id, known_status = by_iccid[iccid]
        usage_mb = bytes_to_mb(ctd_bytes)
        # The status in the usage answer is newer than the last device sync.
        # Projected from the exact bytes: early in a cycle the scale is large (x13 on day 3), and
        # projecting the 3-place MB would multiply its rounding by it.
        projected = projected_mb(ctd_bytes / BYTES_PER_MB, status=status or known_status, usage_date=measured_at,
                                 period_start=period_start, period_end=period_end, now=measured_at)
        rows.append((device_id, period.pk, ctd_bytes, f"{usage_mb:.3f}", f"{projected:.3f}", measured_at, stamp))
        if len(rows) - stored >= USAGE_CHUNK_ROWS:
            flush()

    answered: set[str] = set()
    for plan in sorted(by_plan):
        wanted = by_plan[plan]
        try:
            for page in client.iter_rate_plan_usages(rate_plan=plan, cycle_start=period.start_date):
                run.pages += 1
                measured_at = timezone.now()
                for usage in page.usages:
                    if usage.iccid in wanted and usage.iccid not in answered:
                        answered.add(usage.iccid)
                        stored_row(usage.iccid, usage.data_bytes, None, measured_at)
                for problem in page.problems:
                    log.info("usage sync #%s: %s (asked on its own)", run.pk, problem)
                beat()
                if progress:
                    progress(SyncProgress(kind="usage", done=len(rows), total=len(by_iccid), seen=len(rows),
                                          retries=client.stats.retries))
        except CarrierRequestRejected as exc:
            # A shared plan (not supported by the call): its SIMs are asked one by one.
            log.info("usage sync #%s: %s; its SIMs are asked one by one", run.pk, exc.message)
        except CarrierAccountError as exc:
            if exc.carrier_code != NO_ACCESS_CODE:
                raise
            # The API user's role may not call Get Usage by Rate Plan: every SIM is asked one by one.
            log.warning("usage sync #%s: %s; every SIM's usage is asked one by one", run.pk, exc.message)
            break

    # The rest one call per SIM (ctdUsages): shared plans, SIMs changed this cycle, SIMs missing from the pages.
    def step(failing: int) -> None:
        beat()
        done = len(rows) + failing
        if progress and (done % every == 0 or done == len(by_iccid)):
            progress(SyncProgress(kind="usage", done=done, total=len(by_iccid), seen=done, retries=client.stats.retries))

    failed, asked_again = ask_each_sim(
        [iccid for iccid in by_iccid if iccid not in answered], client.iter_ctd_usages,
        on_answer=lambda iccid, answer: stored_row(iccid, answer.ctd_bytes, answer.status, answer.measured_at),
        after_each=step)
    run.devices_seen = len(rows) + len(failed)
    rejects = record_rejects(run, failed=failed, client=client, asked_again=asked_again)
    if rejects:
        shown = ", ".join(r["iccid"] for r in rejects[:20])
        run.error = (f"no usage for {len(rejects):,} SIM(s) after {1 + settings.USAGE_RETRY_ROUNDS} attempt(s) each: "
                     f"{shown}{' …' if len(rejects) > 20 else ''} (all listed in rejects); a session does not price them")

    merge_started = time.monotonic()
    with transaction.atomic():
        beat(force=True)
        staging.usage_write(rows=rows[stored:])
        run.inserted = selectors.usage_rows_count(provider=provider, period=period) - before
        run.updated = len(rows) - run.inserted
        run.status = SyncStatus.SUCCEEDED
        run.finished_at = timezone.now()
        run.merge_seconds = time.monotonic() - merge_started
        run.duration_seconds = time.monotonic() - started
        run.save()
        ServiceProvider.objects.filter(pk=provider.pk).update(last_usage_sync_at=run.finished_at)
    provider.last_usage_sync_at = run.finished_at
    if len(rows) >= staging.ANALYZE_AFTER_ROWS:
        staging.statistics_refresh(devices=False)
    log.info("usage sync #%s of provider %s: %s SIMs (%s skipped, %s rejected) in %.1fs", run.pk, provider.pk,
             len(rows), run.skipped, run.rejected, run.duration_seconds)
    return run
