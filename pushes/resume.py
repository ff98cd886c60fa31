"""The push's watchdog: batches whose worker died and pushes whose next task was lost are queued again."""
from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from django.db.models import Max, Q
from django.utils import timezone

from pushes.lifecycle import BATCH_TASK, VERIFY_TASK, push_advance
from pushes.models import BatchStatus, PushStatus, RatePlanPush, RatePlanPushBatch
from pushes.tuning import PushTuning

log = logging.getLogger(__name__)


def pushes_resume(*, now: dt.datetime | None = None, enqueue: Callable[..., object] | None = None) -> dict:
    """Give expired batch leases back and re-queue them; re-queue pushes whose next task was lost."""
    if enqueue is None:
        from django_q.tasks import async_task as enqueue
    now = now or timezone.now()
    report = {"requeued_batches": 0, "nudged": 0}
    requeued = set()
    for batch_id, push_id in RatePlanPushBatch.objects.filter(
            status=BatchStatus.RUNNING, lease_expires_at__lt=now).values_list("pk", "push_id"):
        if RatePlanPushBatch.objects.filter(pk=batch_id, status=BatchStatus.RUNNING, lease_expires_at__lt=now).update(
                status=BatchStatus.PENDING, claimed_by="", lease_expires_at=None):
            enqueue(BATCH_TASK, batch_id)
            requeued.add(push_id)
            report["requeued_batches"] += 1
    for push in RatePlanPush.objects.filter(status=PushStatus.RUNNING).exclude(pk__in=requeued):
        lease = dt.timedelta(seconds=PushTuning.of(push).lease_seconds)
        batches = push.batches.all()
        if batches.filter(status=BatchStatus.RUNNING).exists():
            continue
        # Nothing running: the next task was lost if nothing has moved for a lease.
        last = batches.aggregate(last=Max("finished_at"))["last"] or push.started_at or push.created_at
        if now - last < lease:
            continue
        following = batches.filter(status=BatchStatus.PENDING).order_by("number").first()
        if following is not None:
            enqueue(BATCH_TASK, following.pk)
        else:
            push_advance(push_id=push.pk)
        report["nudged"] += 1
    # A verification without a live lease was lost or gave itself back; a duplicate loses its claim.
    for push_id in RatePlanPush.objects.filter(status=PushStatus.VERIFYING).filter(
            Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now)).values_list("pk", flat=True):
        enqueue(VERIFY_TASK, push_id)
        report["nudged"] += 1
    if any(report.values()):
        log.warning("push watchdog: %s", report)
    return report
