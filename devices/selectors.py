"""Reads about SIMs and their syncs: the latest runs, the incremental watermark, a fleet checksum."""
from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable

from devices.models import Device, DeviceUsage, SyncKind, SyncRun, SyncStatus, billed_in_cycle
from rateplans.models import BillingPeriod, RatePlan, ServiceProvider

DEVICE_SYNC_KINDS = (SyncKind.FULL, SyncKind.INCREMENTAL)


def sync_run_latest(*, provider: ServiceProvider, kinds: Iterable[str] = DEVICE_SYNC_KINDS,
                    status: str = SyncStatus.SUCCEEDED) -> SyncRun | None:
    return SyncRun.objects.filter(provider=provider, kind__in=list(kinds), status=status).order_by("-started_at").first()


def device_sync_watermark(*, provider: ServiceProvider) -> dt.datetime | None:
    """The modifiedSince of the next incremental sync: the watermark of the latest successful device sync."""
    latest = sync_run_latest(provider=provider)
    return latest.watermark if latest else None


def sync_runs_running(*, provider: ServiceProvider, kinds: Iterable[str]) -> list[SyncRun]:
    return list(SyncRun.objects.filter(provider=provider, kind__in=list(kinds), status=SyncStatus.RUNNING))


def usage_sync_devices(*, provider: ServiceProvider, statuses: Iterable[str],
                       cycle_start: dt.datetime | None) -> list[tuple[int, str, str, str, dt.datetime | None]]:
    """(device id, ICCID, status, rate plan code, plan_changed_at) of the SIMs whose usage a usage sync asks for, in
    ICCID order: those with a status in `statuses`, and (given `cycle_start`) billed by the carrier in the cycle
    starting then."""
    qs = Device.objects.filter(provider=provider, missing_since__isnull=True, status__in=list(statuses))
    if cycle_start is not None:
        qs = qs.filter(billed_in_cycle(cycle_start=cycle_start))
    return list(qs.order_by("iccid").values_list("id", "iccid", "status", "rate_plan_code", "plan_changed_at"))


def usage_stored_since(*, provider: ServiceProvider, period: BillingPeriod, since: dt.datetime) -> set[int]:
    """Device ids whose usage row of `period` was stored at or after `since`."""
    return set(DeviceUsage.objects.filter(billing_period=period, device__provider=provider, synced_at__gte=since)
               .values_list("device_id", flat=True))


def pooled_plan_codes(*, provider: ServiceProvider) -> set[str]:
    """Codes of the account's shared (pooled) rate plans."""
    return set(RatePlan.objects.filter(provider=provider, pooled=True).values_list("code", flat=True))


def usage_rows_count(*, provider: ServiceProvider, period: BillingPeriod) -> int:
    return DeviceUsage.objects.filter(billing_period=period, device__provider=provider).count()


def devices_checksum(*, provider: ServiceProvider) -> str:
    """A digest of every Device row of the account, to prove a failed sync changed nothing."""
    digest = hashlib.sha256()
    fields = [f.attname for f in Device._meta.concrete_fields]
    for row in Device.objects.filter(provider=provider).order_by("iccid").values_list(*fields).iterator(chunk_size=5000):
        digest.update(repr(row).encode())
        digest.update(b"\n")
    return digest.hexdigest()
