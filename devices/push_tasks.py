"""django-q2 tasks of the rate-plan push: load by id, call a service, nothing else."""
from __future__ import annotations

from devices import push


def push_batch_task(batch_id: int) -> None:
    push.push_batch_run(batch_id=batch_id)


def push_verify_task(push_id: int) -> None:
    push.push_verify_run(push_id=push_id)


def pushes_resume_task() -> None:
    push.pushes_resume()
