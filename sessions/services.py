"""Writes that move an optimization session through its life: start, stages, failure, cancel."""
from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone

from carrieropt.errors import Conflict
from carrieropt.tasks import enqueue_on_commit
from optimizer import services as optimizer_services
from carrieropt.errors import ValidationFailed
from optimizer.models import ChargeType, Method
from rateplans.models import ServiceProvider
from rateplans.services import billing_period_current
from sessions.events import event_record
from sessions.models import (
    ACTIVE_STATUSES,
    EventKind,
    OptimizationSession,
    SessionStatus,
    Stage,
    Trigger,
)

log = logging.getLogger(__name__)

ALREADY_RUNNING = "A Carrier Optimization has not been completed so another optimization will not be triggered."
ALREADY_RUNNING_SUBJECT = "[Warning] Carrier Plan Optimization: Optimization Is Already Running"


class SessionAlreadyRunning(Conflict):
    code = "session_active"


def _choice(field: str, value, choices) -> str:
    if value not in choices.values:
        raise ValidationFailed(f"{field}: {value!r} is not one of {', '.join(choices.values)}.", field=field)
    return value


def session_start(*, provider: ServiceProvider, trigger: str = Trigger.MANUAL, method: str | None = None,
                  charge_type: str | None = None, must_beat_current: bool | None = None,
                  sync_devices: bool = True, now: dt.datetime | None = None) -> OptimizationSession:
    """Create a session and queue its first stage; refuse while one is active for the account.

    An option left None is the account's default (what a scheduled session runs with).
    The refusal comes from the partial unique index, so twenty concurrent
    starts make exactly one session whatever the timing.
    """
    method = _choice("method", provider.default_method if method is None else method, Method)
    charge_type = _choice("charge_type", provider.default_charge_type if charge_type is None else charge_type, ChargeType)
    must_beat_current = provider.default_must_beat_current if must_beat_current is None else bool(must_beat_current)
    now = now or timezone.now()
    period = billing_period_current(provider=provider, at=now)
    options = {"method": method, "charge_type": charge_type, "must_beat_current": must_beat_current}
    try:
        with transaction.atomic():
            run = optimizer_services.run_create(provider=provider, billing_period=period, **options)
            session = OptimizationSession.objects.create(
                tenant_id=provider.tenant_id, provider=provider, billing_period=period, run=run,
                status=SessionStatus.PENDING, stage=Stage.START, trigger=trigger, **options,
                sync_devices=sync_devices, created_at=now, deadline=now + dt.timedelta(minutes=settings.SESSION_DEADLINE_MINUTES),
            )
            event_record(session=session, progress=0)
            enqueue_on_commit("sessions.tasks.run_stage", session.pk, Stage.START)
    except IntegrityError:
        active = OptimizationSession.objects.filter(provider=provider, status__in=ACTIVE_STATUSES).first()
        if active is None:
            raise
        send_mail(ALREADY_RUNNING_SUBJECT, ALREADY_RUNNING, None, provider.alert_recipients, fail_silently=True)
        raise SessionAlreadyRunning(ALREADY_RUNNING, extra={"active_session": str(active.guid)}) from None
    return session


def session_fail(*, session_id: int, message: str) -> OptimizationSession | None:
    """End a session as failed with an ErrorMessage event, unless it already ended."""
    with transaction.atomic():
        session = OptimizationSession.objects.select_for_update().filter(pk=session_id, status__in=ACTIVE_STATUSES).first()
        if session is None:
            return None
        now = timezone.now()
        session.status = SessionStatus.FAILED
        session.error = message
        session.finished_at = now
        session.save(update_fields=["status", "error", "finished_at"])
        optimizer_services.run_stop(run_id=session.run_id)
        event_record(session=session, kind=EventKind.ERROR, progress=session.progress, error_message=message)
    log.warning("session %s failed: %s", session_id, message)
    return session


def session_cancel(*, session: OptimizationSession) -> OptimizationSession:
    with transaction.atomic():
        locked = OptimizationSession.objects.select_for_update().get(pk=session.pk)
        if locked.status not in ACTIVE_STATUSES:
            raise Conflict(f"Session {locked.guid} has already ended ({locked.status}).", field="status")
        locked.status = SessionStatus.CANCELLED
        locked.finished_at = timezone.now()
        locked.error = "Cancelled by an operator."
        locked.save(update_fields=["status", "finished_at", "error"])
        optimizer_services.run_stop(run_id=locked.run_id)
        event_record(session=locked, kind=EventKind.ERROR, progress=locked.progress, error_message=locked.error)
    return locked
