"""Writes that move an optimization session through its life: start, stages, failure, cancel."""
from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from carrieropt.errors import Conflict
from carrieropt.tasks import enqueue_on_commit
from optimizer import services as optimizer_services
from optimizer.models import Method
from rateplans.alerts import alert_raise
from rateplans.models import AlertKind, ServiceProvider
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


def session_start(*, provider: ServiceProvider, trigger: str = Trigger.MANUAL, method: str = Method.CERTIFIED,
                  sync_devices: bool = True, now: dt.datetime | None = None) -> OptimizationSession:
    """Create a session and queue its first stage; refuse while one is active for the account.

    The refusal comes from the partial unique index, so twenty concurrent
    starts make exactly one session whatever the timing.
    """
    now = now or timezone.now()
    period = billing_period_current(provider=provider, at=now)
    try:
        with transaction.atomic():
            run = optimizer_services.run_create(provider=provider, billing_period=period, method=method)
            session = OptimizationSession.objects.create(
                tenant_id=provider.tenant_id, provider=provider, billing_period=period, run=run,
                status=SessionStatus.PENDING, stage=Stage.START, trigger=trigger, method=method,
                sync_devices=sync_devices, created_at=now, deadline=now + dt.timedelta(minutes=settings.SESSION_DEADLINE_MINUTES),
            )
            event_record(session=session, progress=0)
            enqueue_on_commit("sessions.tasks.run_stage", session.pk, Stage.START)
    except IntegrityError:
        active = OptimizationSession.objects.filter(provider=provider, status__in=ACTIVE_STATUSES).first()
        if active is None:
            raise
        # One e-mail per running session, however many starts it refuses (ALERT_DEDUP_MINUTES).
        alert_raise(provider=provider, kind=AlertKind.ALREADY_RUNNING, key=f"session:{active.pk}",
                    subject=ALREADY_RUNNING_SUBJECT,
                    body=f"{ALREADY_RUNNING}\n\nCarrier account: {provider.name}\nRunning session: {active.guid} "
                         f"(started {active.created_at:%Y-%m-%d %H:%M %Z}, {active.get_stage_display()}, "
                         f"{active.progress} %).\nRefused start: {trigger}.\n")
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
    session_failed_alert(session=session)
    return session


def session_failed_alert(*, session: OptimizationSession) -> None:
    """E-mail why a session failed and what was kept (nothing it had not finished is half-written)."""
    provider = session.provider
    tz = provider.tz
    previous = (OptimizationSession.objects.filter(provider=provider, status=SessionStatus.SUCCEEDED)
                .exclude(pk=session.pk).order_by("-finished_at").first())

    def local(value):
        return value.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z") if value else "never"

    kept = [
        f"- SIMs and usage on file as last synced (devices {local(provider.last_device_sync_at)}, "
        f"usage {local(provider.last_usage_sync_at)}); a sync that failed left them unchanged.",
        "- No rate plan was changed on the carrier by this session.",
        (f"- The last completed session, {previous.guid} (finished {local(previous.finished_at)}), keeps its results "
         f"and report." if previous else "- This account has no completed session yet."),
    ]
    body = "\n".join([
        f"The rate plan optimization of {provider.name} ({session.tenant.name}) failed.",
        "",
        f"Session: {session.guid}",
        f"Billing period: {session.billing_period.start_date.isoformat()} to {session.billing_period.end_date.isoformat()}",
        f"Started: {local(session.started_at or session.created_at)}; failed: {local(session.finished_at)}",
        f"Reached: {session.get_stage_display()} ({session.progress} %), trigger {session.get_trigger_display()}",
        "",
        f"Why: {session.error}",
        "",
        "What was kept:",
        *kept,
    ])
    alert_raise(provider=provider, kind=AlertKind.SESSION_FAILED, key=f"session:{session.pk}",
                subject=f"Optimization failed for {provider.name}: {session.error}"[:300], body=body)


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
