"""The stages of a session, each idempotent: a stage that runs twice, or a task delivered
twice, finds the session already moved on and does nothing."""
from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import time

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from carrieropt.errors import ApplicationError
from carrieropt.tasks import enqueue_on_commit
from optimizer import selectors as optimizer_selectors
from optimizer import services as optimizer_services
from optimizer.assignments import run_plan_moves, run_usage
from optimizer.models import GroupStatus
from sessions.crossprovider import comparison_build
from sessions.events import event_record
from sessions.models import ACTIVE_STATUSES, OptimizationSession, SessionStatus, Stage
from sessions.reports import report_email, report_write
from sessions.services import session_fail
from sessions.signals import session_completed

log = logging.getLogger(__name__)

PROGRESS = {Stage.SYNC: 20, Stage.GROUPING: 20, Stage.QUEUEING: 30, Stage.OPTIMIZING: 40, Stage.FINALIZING: 90,
            Stage.COMPLETE: 100}
PLAN_LIMIT_SUBJECT = "Carrier Plan optimization Error: Rate Plans limit exceeded"
SIM_COUNT_SUBJECT = "SIM Counts not Expected"
COVERAGE_SUBJECT = "Optimization warning: usage data missing"
COVERAGE_EMAIL_ICCIDS = 100


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _advance(session_id: int, *, from_stage: str, to_stage: str, progress: int | None, update: dict | None = None,
             next_task: bool = True) -> OptimizationSession | None:
    """Move a session from one stage to the next in one transaction with its event and next task."""
    with transaction.atomic():
        session = OptimizationSession.objects.select_for_update().filter(
            pk=session_id, stage=from_stage, status__in=ACTIVE_STATUSES).first()
        if session is None:
            return None
        now = timezone.now()
        timings = dict(session.stage_timings)
        timings.setdefault(from_stage, {}).update({"finished": now.isoformat()})
        if "started" in timings[from_stage]:
            started = timezone.datetime.fromisoformat(timings[from_stage]["started"])
            timings[from_stage]["seconds"] = round((now - started).total_seconds(), 3)
        timings[to_stage] = {"started": now.isoformat()}
        session.stage = to_stage
        session.stage_timings = timings
        session.stage_claimed_by, session.stage_heartbeat_at = "", None
        session.status = SessionStatus.SUCCEEDED if to_stage == Stage.COMPLETE else SessionStatus.RUNNING
        if to_stage == Stage.COMPLETE:
            session.finished_at = now
            timings[to_stage]["finished"] = now.isoformat()
        for field, value in (update or {}).items():
            setattr(session, field, value)
        emit = progress is not None and progress != session.progress
        if progress is not None:
            session.progress = progress
        session.save()
        if emit:
            event_record(session=session, progress=progress)
        if next_task and to_stage != Stage.COMPLETE:
            enqueue_on_commit("sessions.tasks.run_stage", session.pk, to_stage, **stage_task_options(to_stage))
    return session


def stage_start(session_id: int) -> None:
    with transaction.atomic():
        claimed = OptimizationSession.objects.filter(pk=session_id, status=SessionStatus.PENDING, stage=Stage.START).update(
            status=SessionStatus.RUNNING, started_at=timezone.now())
        if claimed:
            session = OptimizationSession.objects.get(pk=session_id)
            optimizer_services.run_start(run=session.run)
            session.stage_timings = {Stage.START: {"started": session.started_at.isoformat()}}
            session.save(update_fields=["stage_timings"])
    _advance(session_id, from_stage=Stage.START, to_stage=Stage.SYNC, progress=PROGRESS[Stage.SYNC])


def stage_task_options(stage: str) -> dict:
    """django-q2 options for a stage's task: the sync may run far longer than Q_TIMEOUT."""
    return {"timeout": settings.SYNC_STAGE_TIMEOUT} if stage == Stage.SYNC else {}


def stage_claim(session_id: int, stage: str, *, worker: str) -> bool:
    """Compare-and-set the right to run a long stage. A duplicate delivery of its task (the
    broker redelivers after `retry`; the watchdog nudges stalled stages) finds it claimed
    with a live heartbeat and does nothing; a claim whose heartbeat stopped is taken over."""
    now = timezone.now()
    stale = now - dt.timedelta(seconds=settings.STAGE_STALL_SECONDS)
    active = OptimizationSession.objects.filter(pk=session_id, stage=stage, status__in=ACTIVE_STATUSES)
    return bool(active.filter(Q(stage_claimed_by="") | Q(stage_heartbeat_at__lt=stale) | Q(stage_heartbeat_at=None))
                .update(stage_claimed_by=worker, stage_heartbeat_at=now))


class Heartbeat:
    """Progress callback for the sync: at most every STAGE_HEARTBEAT_SECONDS, tell the session
    (and the watchdog) that this worker is alive, and keep the deadline ahead of a sync that moves."""

    def __init__(self, session_id: int, worker: str):
        self.session_id, self.worker, self.last = session_id, worker, 0.0

    def __call__(self, _progress=None) -> None:
        if time.monotonic() - self.last < settings.STAGE_HEARTBEAT_SECONDS:
            return
        self.last = time.monotonic()
        now = timezone.now()
        mine = OptimizationSession.objects.filter(pk=self.session_id, stage_claimed_by=self.worker)
        mine.update(stage_heartbeat_at=now)
        later = now + dt.timedelta(minutes=settings.SESSION_DEADLINE_MINUTES)
        mine.filter(deadline__lt=later).update(deadline=later)
        # A cross-provider session waits for its accounts' sessions: their progress keeps it alive too.
        OptimizationSession.objects.filter(children__pk=self.session_id, deadline__lt=later).update(deadline=later)


def stage_sync(session_id: int) -> None:
    session = OptimizationSession.objects.select_related("provider").get(pk=session_id)
    if session.stage != Stage.SYNC or not session.is_active:
        return
    worker = worker_name()
    if not stage_claim(session_id, Stage.SYNC, worker=worker):
        return
    if session.sync_devices:
        from devices import services as device_services

        heartbeat = Heartbeat(session_id, worker)
        device_run = device_services.device_sync(provider=session.provider, progress=heartbeat)
        if device_run.status != "succeeded":
            session_fail(session_id=session_id, message=f"Device sync failed: {device_run.error}")
            return
        # A top-up: SIMs whose usage this cycle is fresh enough for this run (stored by the daily background
        # sync, or by this session's own sync before its worker died) are not asked again.
        usage_run = device_services.usage_sync(provider=session.provider, period=session.billing_period,
                                               progress=heartbeat,
                                               fresh_since=optimizer_selectors.usage_fresh_since(run=session.run))
        if usage_run.status != "succeeded":
            session_fail(session_id=session_id, message=f"Usage sync failed: {usage_run.error}")
            return
    _advance(session_id, from_stage=Stage.SYNC, to_stage=Stage.GROUPING, progress=None)


def stage_grouping(session_id: int) -> None:
    session = OptimizationSession.objects.select_related("provider", "tenant", "run__provider").get(pk=session_id)
    if session.stage != Stage.GROUPING or not session.is_active:
        return
    try:
        with transaction.atomic():
            outcome = optimizer_services.comm_groups_build(run=session.run)
    except ApplicationError as exc:
        session_fail(session_id=session_id, message=exc.message)
        return
    if outcome.skipped_no_plans:
        log.warning("session %s: communication plans allowing no active rate plan were skipped: %s",
                    session_id, ", ".join(c.name for c in outcome.skipped_no_plans))
    if outcome.skipped_plan_limit:
        names = ", ".join(f"{g.name} ({g.note})" for g in outcome.skipped_plan_limit)
        send_mail(PLAN_LIMIT_SUBJECT,
                  f"Groups skipped: {names}. Please limit the plans selected to {settings.LEGACY_MAX_PLANS} or lower "
                  f"(or use the certified method, limit {settings.CERTIFIED_MAX_PLANS}).",
                  None, session.provider.alert_recipients, fail_silently=True)
    device_count = sum(g.device_count for g in outcome.groups)
    _advance(session_id, from_stage=Stage.GROUPING, to_stage=Stage.QUEUEING, progress=PROGRESS[Stage.QUEUEING],
             update={"device_count": device_count})


def stage_queueing(session_id: int) -> None:
    session = OptimizationSession.objects.select_related("run").get(pk=session_id)
    if session.stage != Stage.QUEUEING or not session.is_active:
        return
    with transaction.atomic():
        locked = OptimizationSession.objects.select_for_update().filter(pk=session_id, stage=Stage.QUEUEING).first()
        if locked is None:
            return
        pending = optimizer_services.work_items_create(run=session.run)
        moved = _advance(session_id, from_stage=Stage.QUEUEING, to_stage=Stage.OPTIMIZING,
                         progress=PROGRESS[Stage.OPTIMIZING], next_task=False)
        if moved is None:
            return
        event_record(session=moved, progress=50)
        OptimizationSession.objects.filter(pk=session_id).update(progress=50)
        for queue_id in pending:
            enqueue_on_commit("sessions.tasks.run_work_item", queue_id)
        if not pending:
            # Nothing to optimize in parallel (e.g. every group kept its baseline).
            enqueue_on_commit("sessions.tasks.run_stage", session_id, Stage.FINALIZING)


def work_item_done(session_id: int) -> None:
    """After a work item ends: raise the percentage, and let the last one start finalize."""
    with transaction.atomic():
        session = OptimizationSession.objects.select_for_update().filter(
            pk=session_id, stage=Stage.OPTIMIZING, status__in=ACTIVE_STATUSES).first()
        if session is None:
            return
        ended, total = optimizer_services.work_progress(run=session.run)
        progress = 50 + (40 * ended // max(total, 1)) // 5 * 5
        if ended >= total:
            _advance(session_id, from_stage=Stage.OPTIMIZING, to_stage=Stage.FINALIZING, progress=PROGRESS[Stage.FINALIZING])
        elif 50 < progress < 90 and progress > session.progress:
            session.progress = progress
            session.save(update_fields=["progress"])
            event_record(session=session, progress=progress)


def stage_finalizing(session_id: int) -> None:
    session = OptimizationSession.objects.select_related("provider", "billing_period", "tenant", "run").get(pk=session_id)
    if session.stage == Stage.OPTIMIZING and session.is_active:
        # Reached from the watchdog or when there was no work: move on explicitly.
        _advance(session_id, from_stage=Stage.OPTIMIZING, to_stage=Stage.FINALIZING, progress=PROGRESS[Stage.FINALIZING],
                 next_task=False)
        session.refresh_from_db()
    if session.stage != Stage.FINALIZING or not session.is_active:
        return
    if session.is_cross_provider_parent and accounts_pending(session):
        # It completes when every account's session has (one failing fails it): the last of them queues this again.
        return
    # Finalize writes the report and e-mails customers: one worker only, even when the
    # watchdog and the last work item both queue it.
    worker = worker_name()
    if not stage_claim(session_id, Stage.FINALIZING, worker=worker):
        return
    heartbeat = Heartbeat(session_id, worker)
    with transaction.atomic():
        totals = optimizer_services.results_finalize(run=session.run, heartbeat=heartbeat,
                                                       max_changes=session.max_changes)
        warnings = coverage_warning(covered=totals.covered, billable=totals.devices)
        OptimizationSession.objects.filter(pk=session_id).update(
            device_count=totals.devices, current_cost=totals.current_cost, baseline_cost=totals.baseline_cost,
            optimized_cost=totals.optimized_cost, lower_bound=totals.lower_bound, sims_with_usage=totals.covered,
            no_usage_count=totals.no_usage, no_usage_iccids=totals.no_usage_iccids, warnings=warnings)
    if warnings:
        _coverage_email(session, covered=totals.covered, iccids=totals.no_usage_iccids)
    expected = optimizer_services.billable_device_count(run=session.run)
    skipped = session.run.comm_groups.filter(status=GroupStatus.SKIPPED_PLAN_LIMIT).exists()
    if totals.devices != expected:
        send_mail(SIM_COUNT_SUBJECT,
                  f"Optimization session {session.guid}: {totals.devices} SIMs were assigned a rate plan, "
                  f"but the {'customer has' if session.customer_id else 'account has'} {expected} billable SIMs" + (" (a group was skipped over the plan limit)." if skipped else "."),
                  None, session.provider.alert_recipients, fail_silently=True)
    session.refresh_from_db()
    heartbeat()
    _workbench_sums(session)
    if session.is_cross_provider_parent:
        session.comparison = comparison_build(session=session)
        OptimizationSession.objects.filter(pk=session_id).update(comparison=session.comparison)
    report_name = _report(session)
    with transaction.atomic():
        update = {"report_path": report_name or ""}
        if warnings:
            update["status"] = SessionStatus.SUCCEEDED_WITH_WARNINGS
        completed = _advance(session_id, from_stage=Stage.FINALIZING, to_stage=Stage.COMPLETE,
                             progress=PROGRESS[Stage.COMPLETE], update=update)
        if completed is not None:
            # Sent in the completing transaction: what a receiver queues (an automatic push) runs iff it commits.
            session_completed.send(sender=OptimizationSession, session=completed)
            if completed.parent_id is not None:
                _parent_nudge(completed.parent_id)
    _assignments_vacuum(session)


def _assignments_vacuum(session: OptimizationSession) -> None:
    """After the session completed: the run's fresh rows vacuumed, so every page of its SIM list reads the index
    only. Extra, like the workbench sums: a failure is logged and autovacuum gets there later."""
    started = time.monotonic()
    try:
        if optimizer_services.assignments_vacuum():
            log.info("session %s: assignments vacuumed in %.1fs", session.guid, time.monotonic() - started)
    except Exception:  # noqa: BLE001
        log.exception("session %s: the assignments were not vacuumed; autovacuum will", session.guid)


def _workbench_sums(session: OptimizationSession) -> None:
    """Read the run's sums the workbench pages show now, once, rather than on the first operator's visit (at a
    million SIMs about a second). They are extra: a failure is logged and the pages read them when opened."""
    try:
        run_plan_moves(run=session.run)
        run_usage(run=session.run)
    except Exception:  # noqa: BLE001
        log.exception("session %s: the workbench sums were not stored; the pages read them when opened", session.guid)


def accounts_pending(session: OptimizationSession) -> bool:
    """Whether an account's session of this cross-provider one is still running (read under the parent's lock, which
    a completing account's session takes too: one of the two always sees the other)."""
    with transaction.atomic():
        OptimizationSession.objects.select_for_update().filter(pk=session.pk).values_list("pk").get()
        return session.children.filter(status__in=ACTIVE_STATUSES).exists()


def _parent_nudge(parent_id: int) -> None:
    """An account's session completed: its cross-provider session, waiting in finalize, looks again."""
    parent = OptimizationSession.objects.select_for_update().filter(
        pk=parent_id, stage=Stage.FINALIZING, status__in=ACTIVE_STATUSES).first()
    if parent is not None:
        enqueue_on_commit("sessions.tasks.run_stage", parent_id, Stage.FINALIZING)


def coverage_warning(*, covered: int, billable: int) -> str:
    """Why a session's answer must not be applied unattended: too few SIMs had usage of the cycle."""
    missing = billable - covered
    if not billable or covered / billable >= settings.MIN_USAGE_COVERAGE:
        return ""
    return (f"Usage data for only {covered:,} of {billable:,} billable SIMs ({covered / billable:.1%}, below "
            f"MIN_USAGE_COVERAGE {settings.MIN_USAGE_COVERAGE:.1%}): {missing:,} SIMs without usage of this cycle were "
            f"kept on their plans (cost shown: fixed charge only). Review before applying; this session is never "
            f"applied automatically.")


def _coverage_email(session, *, covered: int, iccids: list[str]) -> None:
    shown = "\n".join(f"  {iccid}" for iccid in iccids[:COVERAGE_EMAIL_ICCIDS])
    more = f"\n  … and {len(iccids) - COVERAGE_EMAIL_ICCIDS:,} more (all in the report)" if len(iccids) > COVERAGE_EMAIL_ICCIDS else ""
    body = (f"Optimization session {session.guid} of {session.provider.name}: {len(iccids):,} of "
            f"{covered + len(iccids):,} billable SIMs have no usage data for the billing period "
            f"{session.billing_period}. They were kept on their current rate plans and are not changes; the other "
            f"SIMs' recommendations were computed. The session ends with warnings and is not applied automatically.\n"
            f"Check the usage sync (its rejects name each SIM), then run the session again.\n\n"
            f"SIMs without usage data:\n{shown}{more}\n")
    send_mail(f"{COVERAGE_SUBJECT}: {len(iccids):,} SIMs without usage data", body, None,
              session.provider.alert_recipients, fail_silently=True)


def _report(session):
    """Write and e-mail the Excel report; a report failure never loses the results."""
    started = time.monotonic()
    try:
        name = report_write(session=session)
        report_email(session=session, name=name)
    except Exception:  # noqa: BLE001
        log.exception("report for session %s failed", session.pk)
        return None
    log.info("report for session %s written in %.1fs: %s", session.pk, time.monotonic() - started, name)
    return name


STAGES = {
    Stage.START: stage_start,
    Stage.SYNC: stage_sync,
    Stage.GROUPING: stage_grouping,
    Stage.QUEUEING: stage_queueing,
    Stage.FINALIZING: stage_finalizing,
}
