"""django-q2 tasks: load by id, call a service, nothing else."""
from __future__ import annotations

from carrieropt.errors import ApplicationError
from optimizer import services as optimizer_services
from sessions import pipeline, realized, watchdog, webhooks, windows
from sessions.models import OptimizationSession
from sessions.services import session_fail


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


def window_check() -> None:
    windows.windows_check()



def final_usage_check() -> int:
    return len(realized.final_usage_check())
