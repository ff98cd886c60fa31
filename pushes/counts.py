"""Counting a push's changes by outcome, and the rate it achieves; for the API, the admin and the report."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import Count, Q
from django.utils import timezone

from pushes.models import ChangeStatus, RatePlanChange, RatePlanPush


@dataclass(frozen=True)
class PushCounts:
    total: int
    pending: int
    sending: int
    applied: int
    rejected: int
    discrepancy: int
    failed: int
    not_sent: int
    verified: int
    verify_mismatches: int

    @property
    def remaining(self) -> int:
        return self.pending + self.sending

    @property
    def processed(self) -> int:
        return self.applied + self.rejected + self.discrepancy + self.failed


def _aggregates() -> dict:
    # Aliases must not be field names ("verified"), or the ORM takes them for the aggregates.
    status = {f"n_{s}": Count("pk", filter=Q(status=s)) for s in ChangeStatus.values}
    return {"n_total": Count("pk"), "n_verified": Count("pk", filter=Q(verified=True)),
            "n_verify_mismatches": Count("pk", filter=Q(status=ChangeStatus.APPLIED, verified=False,
                                                        verify_reads__gte=2)),
            **status}


def _counts(row: dict) -> PushCounts:
    return PushCounts(**{name[2:]: value for name, value in row.items() if name.startswith("n_")})


def push_counts(*, push_id: int) -> PushCounts:
    """Live counts of a push's changes, in one query."""
    return _counts(RatePlanChange.objects.filter(push_id=push_id).aggregate(**_aggregates()))


def push_counts_many(*, push_ids: Iterable[int]) -> dict[int, PushCounts]:
    """Live counts of several pushes, in one query (a page of the API's list)."""
    ids = list(push_ids)
    rows = (RatePlanChange.objects.filter(push_id__in=ids).order_by().values("push_id")
            .annotate(**_aggregates()))
    found = {row["push_id"]: _counts(row) for row in rows}
    empty = _counts({name: 0 for name in _aggregates()})
    return {pk: found.get(pk, empty) for pk in ids}


def push_counts_refresh(*, push_id: int) -> PushCounts:
    """Store the live counts on the push (read by the admin and dashboards without counting)."""
    counts = push_counts(push_id=push_id)
    RatePlanPush.objects.filter(pk=push_id).update(
        applied=counts.applied, rejected=counts.rejected, discrepancies=counts.discrepancy, failed=counts.failed,
        not_sent=counts.not_sent, verify_mismatches=counts.verify_mismatches)
    return counts


def push_rate_live(*, push: RatePlanPush, processed: int, now: dt.datetime | None = None) -> float | None:
    """SIMs per minute: the measured rate once the push ended, else the rate so far."""
    if push.measured_rate is not None or not push.is_active or push.started_at is None:
        return push.measured_rate
    seconds = ((now or timezone.now()) - push.started_at).total_seconds()
    return processed * 60 / seconds if seconds > 0 and processed else None
