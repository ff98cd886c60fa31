"""django-q2 tasks of the devices app: the background sync that keeps each account's SIMs and usage fresh."""
from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from devices import selectors
from devices.models import SyncKind, SyncStatus
from devices.services import device_sync, usage_sync
from rateplans.models import NOT_SYNCABLE_INTEGRATIONS, ServiceProvider

log = logging.getLogger(__name__)


def background_due(*, now: dt.datetime | None = None) -> list[ServiceProvider]:
    """Active, syncable accounts whose last usage sync is older than BACKGROUND_SYNC_HOURS and that have no
    sync running (a running one that stopped beating is taken over by the sync it gets)."""
    hours = settings.BACKGROUND_SYNC_HOURS
    if not hours:
        return []
    now = now or timezone.now()
    stale = now - dt.timedelta(hours=hours)
    accounts = (ServiceProvider.objects.filter(active=True).exclude(integration__in=NOT_SYNCABLE_INTEGRATIONS)
                .filter(Q(last_usage_sync_at__isnull=True) | Q(last_usage_sync_at__lt=stale)).order_by("pk"))
    stall = now - dt.timedelta(seconds=settings.STAGE_STALL_SECONDS)
    return [account for account in accounts
            if not [r for r in selectors.sync_runs_running(provider=account, kinds=[*selectors.DEVICE_SYNC_KINDS, SyncKind.USAGE])
                    if (r.heartbeat_at or r.started_at) >= stall]]


def background_syncs() -> int:
    """Schedule (hourly): queue one background sync per account that is due; each runs in its own task."""
    from django_q.tasks import async_task

    due = background_due()
    for account in due:
        async_task("devices.tasks.background_sync", account.pk, timeout=settings.SYNC_STAGE_TIMEOUT,
                   task_name=f"background sync of account {account.pk}")
    return len(due)


def background_sync(provider_id: int) -> str:
    """Devices (incremental, or full when due), then the usage older than BACKGROUND_SYNC_HOURS. Yields to a
    session's sync, which resumes from this one's checkpoint; refused while a push or a session runs."""
    account = ServiceProvider.objects.filter(pk=provider_id, active=True).first()
    if account is None:
        return f"account {provider_id}: not active; nothing synced"
    run = device_sync(provider=account, background=True)
    if run.status != SyncStatus.SUCCEEDED:
        return f"account {provider_id}: device sync #{run.pk} {run.status}: {run.error}"
    fresh_since = timezone.now() - dt.timedelta(hours=settings.BACKGROUND_SYNC_HOURS)
    usage = usage_sync(provider=account, background=True, fresh_since=fresh_since)
    outcome = f"account {provider_id}: device sync #{run.pk}, usage sync #{usage.pk} {usage.status}"
    if usage.status != SyncStatus.SUCCEEDED:
        outcome += f": {usage.error}"
    log.info("background sync: %s", outcome)
    return outcome
