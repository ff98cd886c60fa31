"""After a billing cycle ends: read its final usage and show what each session's recommendation actually saved."""
from __future__ import annotations

import datetime as dt
import logging

from devices.final_usage import final_usage_due, final_usage_sync
from devices.models import SyncRun
from optimizer.models import RunRealized
from rateplans.models import ServiceProvider

log = logging.getLogger(__name__)


def final_usage_check(*, now: dt.datetime | None = None) -> list[SyncRun]:
    """For every active carrier account whose last ended cycle is due (devices.final_usage.final_usage_due), read
    its final usage; the optimizer then computes the realized savings of the cycle's runs (final_usage_synced)."""
    runs = []
    for provider in ServiceProvider.objects.filter(active=True).order_by("pk"):
        period = final_usage_due(provider=provider, now=now)
        if period is None:
            continue
        run = final_usage_sync(provider=provider, period=period, now=now)
        log.info("final usage of %s for %s: sync #%s %s %s", provider, period, run.pk, run.status, run.error)
        runs.append(run)
    return runs


def session_realized(session) -> RunRealized | None:
    """The realized savings of the session's run, once its cycle's final usage has been read."""
    try:
        return session.run.realized  # select_related("run__realized") where many sessions are shown
    except RunRealized.DoesNotExist:
        return None
