"""django-q2 tasks: load by id, call a service, nothing else."""
from __future__ import annotations

import logging

from carrieropt.errors import ApplicationError
from devices.models import RatePlanPush
from devices.push import PushAlreadyRunning, pushes_resume
from optimizer import services as optimizer_services
from sessions import pipeline, watchdog, webhooks, windows
from sessions.apply import session_apply
from sessions.models import OptimizationSession
from sessions.services import session_fail

log = logging.getLogger(__name__)


def run_stage(session_id: int, stage: str) -> None:
    try:
        pipeline.STAGES[stage](session_id)
    except ApplicationError as exc:
        session_fail(session_id=session_id, message=exc.message)
    except Exception as exc:
        session_fail(session_id=session_id, message=f"Internal error in stage {stage}: {type(exc).__name__}: {exc}")
        raise


def run_work_item(queue_id: int) -> None:
    session_id = (OptimizationSession.objects.filter(run__queues=queue_id)
                  .values_list("pk", flat=True).first())
    if session_id is None:
        return
    optimizer_services.work_item_run(queue_id=queue_id, worker=pipeline.worker_name())
    pipeline.work_item_done(session_id)


def deliver_events() -> int:
    return webhooks.events_deliver().delivered


def watchdog_run() -> None:
    watchdog.watchdog_run()
    # The same schedule resumes rate-plan pushes whose worker died (expired batch leases, lost tasks).
    pushes_resume()


def window_check() -> None:
    windows.windows_check()


def apply_session(session_id: int, trigger: str = "auto") -> None:
    session = OptimizationSession.objects.filter(pk=session_id).first()
    if session is None:
        return
    if trigger == "auto" and RatePlanPush.objects.filter(session=session, trigger="auto").exists():
        # A redelivered task: the automatic push already happened (or was a No-Go); once is the rule.
        return
    try:
        session_apply(session=session, trigger=trigger)
    except PushAlreadyRunning as exc:
        # Not lost: the session can be applied again from the API, the admin or the command.
        log.warning("session %s: automatic rate plan update not started: %s", session_id, exc.message)
