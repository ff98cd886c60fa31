"""Go/No-Go: whether a push can finish before the billing period ends, at the rate the account achieves."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from pushes.counts import push_counts
from pushes.models import CHANGE_OPEN_STATUSES, PushStatus, RatePlanChange, RatePlanPush
from rateplans.models import BillingPeriod, ServiceProvider

CALLS_PER_CHANGE = 2  # the read just before, and the PUT
VERIFY_CALLS_PER_CHANGE = 1  # the read back after the push (a mismatch is read twice; rare)


@dataclass(frozen=True)
class GoNoGo:
    go: bool
    reason: str
    minutes_needed: float
    minutes_left: float
    rate_per_minute: float
    rate_source: str
    period_ends_at: dt.datetime
    expected: int = 0  # changes expected to be sent before the period ends


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


def minutes_to_send(changes: int, rate_per_minute: float) -> float:
    """Minutes to send `changes` and read each back once (verification) at `rate_per_minute` SIMs per minute.

    The rate counts a SIM's read and PUT (CALLS_PER_CHANGE calls); the verification adds one read each.
    """
    return changes * (CALLS_PER_CHANGE + VERIFY_CALLS_PER_CHANGE) / CALLS_PER_CHANGE / rate_per_minute


def changes_that_fit(minutes: float, rate_per_minute: float) -> int:
    """How many changes can be sent and verified in `minutes` (the inverse of minutes_to_send)."""
    if minutes <= 0:
        return 0
    return int(minutes * rate_per_minute * CALLS_PER_CHANGE / (CALLS_PER_CHANGE + VERIFY_CALLS_PER_CHANGE) + 1e-9)


def push_decide(*, provider: ServiceProvider, period: BillingPeriod, changes: int, batch_size: int,
                verify_delay_seconds: float = 0.0, now: dt.datetime | None = None) -> GoNoGo:
    """Go when at least one batch can be sent and verified with PUSH_MIN_SLACK_MINUTES to spare.

    Time needed is every change, plus its verification read, at the rate the
    account achieves. When not all of them fit, the push goes for the batches
    that do (the largest savings come first) and each batch is checked again
    before it is sent (batch_fits), at the rate this push is measuring.
    """
    now = now or timezone.now()
    slack = float(settings.PUSH_MIN_SLACK_MINUTES)
    rate, source = push_rate_best(provider=provider)
    verify_wait = verify_delay_seconds / 60
    needed = minutes_to_send(changes, rate) + (verify_wait if changes else 0.0)
    ends = period.ends_at()
    left = (ends - now).total_seconds() / 60
    local_end = ends.astimezone(provider.tz)
    facts = (f"{changes:,} changes (and their verification reads) need {needed:,.1f} min at {rate:.1f} SIMs/min "
             f"({source}); the billing period ends {local_end:%Y-%m-%d %H:%M %Z}, {left:,.1f} min from now")
    fit = changes_that_fit(left - slack - verify_wait, rate)
    fit_batches = min(fit // batch_size, -(-changes // batch_size))
    if left - needed >= slack:
        go, expected = True, changes
        reason = f"Go: {facts}, leaving {left - needed:,.1f} min (at least {slack:g} needed)."
    elif fit_batches >= 1:
        go, expected = True, fit_batches * batch_size
        batches = f"{fit_batches:,} batch{'es' if fit_batches > 1 else ''} of {batch_size:,}"
        reason = (f"Go for part: {facts}, so not all fit with {slack:g} min to spare. About {expected:,} changes "
                  f"({batches}, largest savings first) can be sent in time; each batch is checked again before "
                  f"it is sent, and the changes left when the period would end first are not sent and reported.")
    else:
        go, expected = False, 0
        reason = (f"No-Go: {facts}; not even one batch of {min(changes, batch_size):,} fits with at least "
                  f"{slack:g} min to spare, so it was not started and nothing was changed on the carrier.")
    return GoNoGo(go=go, reason=reason, minutes_needed=needed, minutes_left=left, rate_per_minute=rate,
                  rate_source=source, period_ends_at=ends, expected=expected)


@dataclass(frozen=True)
class BatchFit:
    fits: bool
    reason: str


def batch_fits(*, push: RatePlanPush, batch_number: int, verify_delay_seconds: float,
               now: dt.datetime | None = None) -> BatchFit:
    """Whether this batch, and the verification of all the push sent, ends PUSH_MIN_SLACK_MINUTES before the period.

    The rate is the one this push measured once it processed PUSH_RATE_MIN_SAMPLE
    SIMs, else the rate its Go/No-Go planned with.
    """
    now = now or timezone.now()
    slack = float(settings.PUSH_MIN_SLACK_MINUTES)
    counts = push_counts(push_id=push.pk)
    rate, source = push.rate_per_minute, "planned"
    if counts.processed >= int(settings.PUSH_RATE_MIN_SAMPLE) and push.send_seconds > 0:
        rate, source = counts.processed * 60 / push.send_seconds, "measured by this push"
    todo = RatePlanChange.objects.filter(push=push, batch=batch_number, status__in=CHANGE_OPEN_STATUSES).count()
    # This batch's sends and reads, then one read back for everything applied so far and in this batch.
    needed = (todo / rate + (counts.applied + todo) * VERIFY_CALLS_PER_CHANGE / (CALLS_PER_CHANGE * rate)
              + verify_delay_seconds / 60)
    left = (push.period_ends_at - now).total_seconds() / 60
    local_end = push.period_ends_at.astimezone(push.provider.tz)
    facts = (f"batch {batch_number} ({todo:,} changes) and the verification of {counts.applied + todo:,} need "
             f"{needed:,.1f} min at {rate:.1f} SIMs/min ({source}); the billing period ends "
             f"{local_end:%Y-%m-%d %H:%M %Z}, {left:,.1f} min from now")
    if left - needed >= slack:
        return BatchFit(True, f"{facts}, leaving {left - needed:,.1f} min.")
    return BatchFit(False, f"Billing period ending: {facts}; at least {slack:g} min must remain, so the push "
                           f"stopped before batch {batch_number}.")
