"""When scheduled sessions start: the last days of each account's billing cycle, in its own time zone."""
from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.utils import timezone

from carrieropt.actors import SCHEDULE
from rateplans.cycles import cycle_bounds
from rateplans.models import ServiceProvider
from sessions.models import ACTIVE_STATUSES, OptimizationSession, SessionStatus, Trigger
from sessions.services import SessionAlreadyRunning, session_start

log = logging.getLogger(__name__)


def window_is_open(*, provider: ServiceProvider, now: dt.datetime) -> bool:
    """Within the last OPTIMIZATION_WINDOW_DAYS days of the cycle (the end date included, all day)
    and at or after the account's start hour, both in the billing time zone."""
    local = now.astimezone(provider.tz)
    _, end = cycle_bounds(local.date(), provider.billing_cycle_end_day)
    days_before_end = (end - local.date()).days
    return 0 <= days_before_end < settings.OPTIMIZATION_WINDOW_DAYS and local.hour >= (provider.optimization_start_hour or 0)


def schedule_should_start(*, provider: ServiceProvider, now: dt.datetime) -> tuple[bool, str]:
    if not window_is_open(provider=provider, now=now):
        return False, "outside the optimization window"
    sessions = OptimizationSession.objects.filter(provider=provider)
    if sessions.filter(status__in=ACTIVE_STATUSES).exists():
        return False, "a session is active"
    local = now.astimezone(provider.tz)
    start, end = cycle_bounds(local.date(), provider.billing_cycle_end_day)
    this_period = sessions.filter(billing_period__end_date=end)
    if local.date() == end:
        # The last day allows one re-run on the freshest usage once earlier runs ended.
        last_day_start = dt.datetime.combine(end, dt.time.min, tzinfo=provider.tz)
        if this_period.filter(created_at__gte=last_day_start, status=SessionStatus.SUCCEEDED).exists():
            return False, "already re-run on the last day of the cycle"
        return True, "last day of the cycle"
    # A session that succeeded with warnings (usage missing) does not count: the window tries again.
    if this_period.filter(status=SessionStatus.SUCCEEDED).exists():
        return False, "this billing period is already optimized"
    return True, "inside the optimization window"


def windows_check(*, now: dt.datetime | None = None) -> list[OptimizationSession]:
    """The hourly schedule: start a session for every active account whose window is open."""
    now = now or timezone.now()
    started = []
    for provider in ServiceProvider.objects.filter(active=True).select_related("tenant"):
        go, reason = schedule_should_start(provider=provider, now=now)
        if not go:
            log.info("window check %s: %s", provider, reason)
            continue
        try:
            started.append(session_start(provider=provider, trigger=Trigger.SCHEDULED, started_by=SCHEDULE, now=now))
        except SessionAlreadyRunning:
            log.info("window check %s: a session started meanwhile", provider)
    return started
