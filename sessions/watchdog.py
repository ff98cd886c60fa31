"""Makes sure no session stays "running" forever: re-queues lost work, fails what is past its deadline."""
from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.utils import timezone
from django_q.tasks import async_task

from optimizer import services as optimizer_services
from rateplans.alerts import alert_raise
from rateplans.models import AlertKind
from sessions import pipeline
from sessions.models import ACTIVE_STATUSES, OptimizationSession, Stage
from sessions.services import session_fail

log = logging.getLogger(__name__)


def watchdog_run(*, now: dt.datetime | None = None) -> dict:
    now = now or timezone.now()
    report = {"requeued": 0, "failed_items": 0, "failed_sessions": 0, "nudged": 0}
    # What the watchdog did to each session, e-mailed once per session (a failure past the
    # deadline is the session-failed alert, which says why).
    actions: dict[int, list[str]] = {}

    expired = list(optimizer_services.work_items_expired(now=now).values_list("pk", "run_id"))
    session_of_run = dict(OptimizationSession.objects.filter(run_id__in={run_id for _, run_id in expired})
                          .values_list("run_id", "pk"))
    for queue_id, run_id in expired:
        session_id = session_of_run.get(run_id)
        outcome = optimizer_services.work_item_release(queue_id=queue_id, max_attempts=settings.Q_CLUSTER["max_attempts"])
        if outcome == "requeued":
            async_task("sessions.tasks.run_work_item", queue_id)
            report["requeued"] += 1
            if session_id is not None:
                actions.setdefault(session_id, []).append(
                    f"Work item {queue_id}: its worker's lease expired; queued again.")
        elif outcome == "failed":
            if session_id is not None:
                pipeline.work_item_done(session_id)
                actions.setdefault(session_id, []).append(
                    f"Work item {queue_id}: its lease expired {settings.Q_CLUSTER['max_attempts']} times; marked failed "
                    f"(its group keeps the current plans).")
            report["failed_items"] += 1

    for session_id in OptimizationSession.objects.filter(status__in=ACTIVE_STATUSES, deadline__lt=now).values_list("pk", flat=True):
        if session_fail(session_id=session_id, message="The session did not finish before its deadline; "
                                                       "it was stopped so another can start."):
            report["failed_sessions"] += 1

    # A stage whose task was lost (a broker restart, a worker killed between
    # commit and enqueue) is started again; stages are idempotent.
    stall = dt.timedelta(seconds=settings.STAGE_STALL_SECONDS)
    for session in OptimizationSession.objects.filter(status__in=ACTIVE_STATUSES, deadline__gte=now).select_related("run"):
        if session.stage == Stage.OPTIMIZING:
            ended, total = optimizer_services.work_progress(run=session.run)
            if ended >= total:
                async_task("sessions.tasks.run_stage", session.pk, Stage.FINALIZING)
                report["nudged"] += 1
                actions.setdefault(session.pk, []).append(
                    "Every work item had ended but finalize had not started; finalize queued.")
            continue
        if session.is_cross_provider_parent and session.stage == Stage.FINALIZING and pipeline.accounts_pending(session):
            continue  # waiting for its accounts' sessions, not stalled: the last of them queues it
        started = (session.stage_timings.get(session.stage) or {}).get("started")
        since = dt.datetime.fromisoformat(started) if started else session.created_at
        # A stage whose worker still beats its heartbeat is slow, not lost.
        since = max(since, session.stage_heartbeat_at or since)
        if now - since > stall:
            async_task("sessions.tasks.run_stage", session.pk, session.stage, **pipeline.stage_task_options(session.stage))
            report["nudged"] += 1
            actions.setdefault(session.pk, []).append(
                f"Stage {session.get_stage_display()!r} showed no progress since {since:%Y-%m-%d %H:%M:%S %Z} "
                f"(more than {settings.STAGE_STALL_SECONDS} s, no worker heartbeat); its task was queued again.")
    if any(report.values()):
        log.warning("watchdog: %s", report)
    for session in OptimizationSession.objects.filter(pk__in=actions).select_related("provider"):
        alert_raise(provider=session.provider, kind=AlertKind.WATCHDOG, key=f"session:{session.pk}",
                    subject=f"Watchdog acted on the optimization of {session.provider.name}",
                    body="\n".join([f"Session: {session.guid} ({session.get_status_display()}, "
                                     f"{session.get_stage_display()}, {session.progress} %)", "",
                                     *actions[session.pk], "",
                                     "A lost or stalled worker is the usual cause: check that qcluster is running "
                                     "(manage.py qmonitor) and its log."]))
    return report
