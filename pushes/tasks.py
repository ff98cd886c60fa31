"""django-q2 tasks of the rate-plan push: load by id, call a service, nothing else.

Their dotted paths before the push had its own app were devices.push_tasks.push_batch_task,
devices.push_tasks.push_verify_task and sessions.tasks.apply_session; see README "Upgrading".
"""
from __future__ import annotations

from pushes.batches import push_batch_run
from pushes.recommendations import session_apply_queued
from pushes.resume import pushes_resume
from pushes.verify import push_verify_run
from sessions.models import OptimizationSession


def push_batch_task(batch_id: int) -> None:
    push_batch_run(batch_id=batch_id)


def push_verify_task(push_id: int) -> None:
    push_verify_run(push_id=push_id)


def session_apply_task(session_id: int, trigger: str = "auto") -> None:
    session = OptimizationSession.objects.filter(pk=session_id).first()
    if session is not None:
        session_apply_queued(session=session, trigger=trigger)


def resume_pushes() -> None:
    """Scheduled every minute (PushesConfig.schedules)."""
    pushes_resume()
