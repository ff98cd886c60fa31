"""Enqueue django-q2 tasks only once the surrounding transaction has committed."""
from __future__ import annotations

from django.db import transaction


def enqueue_on_commit(func: str, *args, **kwargs) -> None:
    """A task enqueued inside a transaction that rolls back must never run, and a
    task that runs must see the rows its enqueuer wrote: so enqueue after COMMIT."""
    from django_q.tasks import async_task

    transaction.on_commit(lambda: async_task(func, *args, **kwargs))
