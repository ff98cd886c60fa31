"""Creating a push: every change recorded as a row, Go/No-Go decided, the first batch queued (or a No-Go e-mailed)."""
from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.utils import timezone

from carrieropt.errors import Conflict, ValidationFailed
from carrieropt.tasks import enqueue_on_commit
from carriers import IntegrationNotSupported
from pushes.decide import push_decide
from pushes.lifecycle import BATCH_TASK
from pushes.models import (
    PUSH_ACTIVE_STATUSES,
    PushDecision,
    PushStatus,
    RatePlanChange,
    RatePlanPush,
    RatePlanPushBatch,
)
from pushes.notify import no_go_email
from pushes.tuning import PushTuning
from rateplans.models import BillingPeriod, ServiceProvider

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlannedChange:
    """A SIM to move, as the optimization saw it."""

    device_id: int
    iccid: str
    from_plan_id: int | None
    from_plan_code: str
    to_plan_id: int
    to_plan_code: str
    saving: Decimal | None = None  # what the move saves this cycle, when known: sent first when time is short


class PushAlreadyRunning(Conflict):
    code = "push_running"


def push_create(*, provider: ServiceProvider, changes: Sequence[PlannedChange], period: BillingPeriod,
                session_id: int | None = None, trigger: str = "manual", applied_by: str = "",
                now: dt.datetime | None = None) -> RatePlanPush:
    """Record a push and its changes, decide Go/No-Go, and queue its first batch (Go) or e-mail why not (No-Go).

    Every change is a row before anything is sent. A No-Go records the push
    with its reason and sends nothing. `now` is the moment the decision is
    taken for (default: now).
    """
    now = now or timezone.now()
    if not provider.is_jasper_family:
        raise IntegrationNotSupported(
            f"Carrier account {provider.name!r} uses {provider.integration}; rate-plan updates are only "
            f"implemented for the Jasper family (Jasper, POD19, TMobileJasper, Rogers).", field="integration")
    devices = [c.device_id for c in changes]
    if len(set(devices)) != len(devices):
        raise ValidationFailed("A push may change each SIM once; the change list names a SIM twice.", field="changes")
    if any(c.from_plan_code == c.to_plan_code for c in changes):
        raise ValidationFailed("A change must move a SIM to a different rate plan.", field="changes")
    running = push_running(provider=provider)
    if running is not None:
        raise _already_running(running)
    tuning = PushTuning.from_settings(provider=provider)
    decision = push_decide(provider=provider, period=period, changes=len(changes), batch_size=tuning.batch_size,
                           verify_delay_seconds=tuning.verify_delay, now=now)
    # Largest savings first, so the batches that fit when time is short carry the most money; then by ICCID.
    ordered = sorted(changes, key=lambda c: (c.saving is None, -(c.saving or 0), c.iccid))
    clock = timezone.now()  # timestamps are real time even when the decision is asked about another moment
    if not decision.go:
        status = PushStatus.NO_GO
    else:
        status = PushStatus.RUNNING if ordered else PushStatus.SUCCEEDED
    try:
        with transaction.atomic():
            push = RatePlanPush.objects.create(
                provider=provider, session_id=session_id, trigger=trigger, applied_by=applied_by, status=status,
                decision=PushDecision.GO if decision.go else PushDecision.NO_GO, decision_reason=decision.reason,
                period_ends_at=decision.period_ends_at, minutes_left=decision.minutes_left,
                minutes_needed=decision.minutes_needed, expected=decision.expected,
                rate_per_minute=decision.rate_per_minute,
                rate_source=decision.rate_source, batch_size=tuning.batch_size, total=len(ordered),
                tuning=tuning.as_json(), started_at=clock if status == PushStatus.RUNNING else None,
                finished_at=None if status == PushStatus.RUNNING else clock,
            )
            if status == PushStatus.RUNNING:
                size = tuning.batch_size
                RatePlanChange.objects.bulk_create([
                    RatePlanChange(push=push, device_id=c.device_id, iccid=c.iccid, from_plan_id=c.from_plan_id,
                                   from_plan_code=c.from_plan_code, to_plan_id=c.to_plan_id,
                                   to_plan_code=c.to_plan_code, batch=i // size + 1)
                    for i, c in enumerate(ordered)], batch_size=1000)
                batches = RatePlanPushBatch.objects.bulk_create([
                    RatePlanPushBatch(push=push, number=n + 1) for n in range((len(ordered) + size - 1) // size)])
                first = batches[0].pk or RatePlanPushBatch.objects.get(push=push, number=1).pk
                enqueue_on_commit(BATCH_TASK, first)
    except IntegrityError:
        running = push_running(provider=provider)
        if running is None:
            raise
        raise _already_running(running) from None
    log.info("push %s for %s: %s", push.pk, provider, decision.reason)
    if not decision.go:
        no_go_email(push)
    return push


def push_running(*, provider: ServiceProvider) -> RatePlanPush | None:
    """The push of the account that is sending or verifying, if any (the database allows one)."""
    return RatePlanPush.objects.filter(provider=provider, status__in=PUSH_ACTIVE_STATUSES).first()


def _already_running(push: RatePlanPush) -> PushAlreadyRunning:
    return PushAlreadyRunning(
        f"Rate plan update #{push.pk} of this carrier account is still {push.status}; wait for it to finish.",
        extra={"active_push": push.pk})
