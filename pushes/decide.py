"""Go/No-Go: whether a push can finish before the billing period ends, at the rate the account achieves."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from pushes.models import PushStatus, RatePlanPush
from rateplans.models import BillingPeriod, ServiceProvider

CALLS_PER_CHANGE = 2  # the read just before, and the PUT


@dataclass(frozen=True)
class GoNoGo:
    go: bool
    reason: str
    minutes_needed: float
    minutes_left: float
    rate_per_minute: float
    rate_source: str
    period_ends_at: dt.datetime


def push_rate_best(*, provider: ServiceProvider) -> tuple[float, str]:
    """SIMs per minute to plan with: the best rate measured on an earlier push of the account, else the default,
    and never more than the account's rate limit allows (each SIM costs a read and a PUT).

    A push counts once it processed PUSH_RATE_MIN_SAMPLE SIMs: a rate measured
    over a handful of SIMs sent in parallel says nothing about a sustained batch.
    The cap matters when the limit was lowered since that push was measured.
    """
    sample = int(settings.PUSH_RATE_MIN_SAMPLE)
    ceiling = float(provider.rate_limit_per_second) * 60 / CALLS_PER_CHANGE
    best = (RatePlanPush.objects.filter(provider=provider, measured_rate__gt=0,
                                        status__in=[PushStatus.SUCCEEDED, PushStatus.FINISHED_WITH_ERRORS])
            .annotate(processed=F("applied") + F("rejected") + F("discrepancies") + F("failed"))
            .filter(processed__gte=sample).order_by("-measured_rate", "-pk").first())
    if best is not None:
        rate, source = best.measured_rate, f"best measured rate: push #{best.pk}, {best.measured_rate:.1f} SIMs/min"
    else:
        rate = float(settings.PUSH_DEFAULT_RATE_PER_MINUTE)
        source = f"default rate {rate:g} SIMs/min (no earlier push of this account measured one)"
    if rate > ceiling:
        return ceiling, (f"{source}, capped at {ceiling:.1f} SIMs/min by the account's limit of "
                         f"{provider.rate_limit_per_second} calls/s")
    return rate, source


def push_decide(*, provider: ServiceProvider, period: BillingPeriod, changes: int, batch_size: int,
                now: dt.datetime | None = None) -> GoNoGo:
    """Go only when the minutes left in the billing period exceed the minutes needed by PUSH_MIN_SLACK_MINUTES."""
    now = now or timezone.now()
    slack = float(settings.PUSH_MIN_SLACK_MINUTES)
    rate, source = push_rate_best(provider=provider)
    needed = min(changes, batch_size) / rate
    ends = period.ends_at()
    left = (ends - now).total_seconds() / 60
    local_end = ends.astimezone(provider.tz)
    facts = (f"{changes:,} changes need {needed:.1f} min at {rate:.1f} SIMs/min ({source}); "
             f"the billing period ends {local_end:%Y-%m-%d %H:%M %Z}, {left:,.1f} min from now")
    go = left - needed >= slack
    if go:
        reason = f"Go: {facts}, leaving {left - needed:,.1f} min (at least {slack:g} needed)."
    else:
        reason = (f"No-Go: {facts}; at least {slack:g} min must remain after the update, so it was not started "
                  f"and nothing was changed on the carrier.")
    return GoNoGo(go=go, reason=reason, minutes_needed=needed, minutes_left=left, rate_per_minute=rate,
                  rate_source=source, period_ends_at=ends)
