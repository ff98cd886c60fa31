"""What happens to a push after each step: the next batch, the verification, a stop, the end."""
from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from carrieropt.tasks import enqueue_on_commit
from pushes.counts import push_counts_refresh
from pushes.models import (
    CHANGE_OPEN_STATUSES,
    PUSH_ACTIVE_STATUSES,
    BatchStatus,
    ChangeStatus,
    PushStatus,
    RatePlanChange,
    RatePlanPush,
    RatePlanPushBatch,
)
from pushes.notify import report_email

log = logging.getLogger(__name__)

# Dotted paths of the django-q2 tasks (pushes/tasks.py); enqueued by name, so the services never import tasks.
BATCH_TASK = "pushes.tasks.push_batch_task"
VERIFY_TASK = "pushes.tasks.push_verify_task"


def push_advance(*, push_id: int) -> None:
    """After a batch: queue the next one, or the verification when none is left."""
    with transaction.atomic():
        push = RatePlanPush.objects.select_for_update().filter(pk=push_id, status=PushStatus.RUNNING).first()
        if push is None:
            return
        batches = RatePlanPushBatch.objects.filter(push=push)
        if batches.filter(status=BatchStatus.RUNNING).exists():
            return
        following = batches.filter(status=BatchStatus.PENDING).order_by("number").first()
        if following is not None:
            enqueue_on_commit(BATCH_TASK, following.pk)
            return
        push.status = PushStatus.VERIFYING
        push.save(update_fields=["status"])
        enqueue_on_commit(VERIFY_TASK, push.pk)


def push_abort(*, push_id: int, reason: str) -> RatePlanPush | None:
    """Stop a push on an account-wide error: every change not yet settled is failed, with why.

    A change with a recorded send may have landed (a PUT whose answer was lost):
    when there is one, the push goes through the verification read, which counts
    those that landed as applied, before it ends as failed with `reason`.
    """
    with transaction.atomic():
        push = RatePlanPush.objects.select_for_update().filter(pk=push_id, status__in=PUSH_ACTIVE_STATUSES).first()
        if push is None:
            return None
        now = timezone.now()
        open_changes = RatePlanChange.objects.filter(push=push, status__in=CHANGE_OPEN_STATUSES)
        open_changes.filter(sends=0).update(
            status=ChangeStatus.FAILED, finished_at=now, error=f"Not sent: the push stopped. {reason}")
        open_changes.filter(sends__gt=0).update(
            status=ChangeStatus.FAILED, finished_at=now,
            error=f"Outcome unknown: the push stopped after a send; the verification read tells whether it "
                  f"landed. {reason}")
        RatePlanPushBatch.objects.filter(push=push).exclude(status=BatchStatus.DONE).update(
            status=BatchStatus.DONE, finished_at=now, lease_expires_at=None)
        counts = push_counts_refresh(push_id=push.pk)
        push.refresh_from_db()
        push.error = reason
        unknown = RatePlanChange.objects.filter(push=push, status=ChangeStatus.FAILED, sends__gt=0).exists()
        if unknown and push.status == PushStatus.RUNNING:
            # push_finish ends it as failed (push.error says why) once the reads settled the sends.
            push.status, push.claimed_by, push.lease_expires_at = PushStatus.VERIFYING, "", None
            push.save(update_fields=["status", "error", "claimed_by", "lease_expires_at"])
            enqueue_on_commit(VERIFY_TASK, push.pk)
        else:
            push.status, push.finished_at = PushStatus.FAILED, now
            push.save(update_fields=["status", "error", "finished_at"])
    log.warning("push %s stopped: %s (%s applied)", push_id, reason, counts.applied)
    if push.status == PushStatus.FAILED:
        report_email(push)
    return push


def push_stop_in_time(*, push_id: int, from_batch: int, reason: str) -> RatePlanPush | None:
    """Stop a push before batch `from_batch` because the billing period would end first.

    Its unsent changes (this batch and every later one) are "not sent: billing
    period ending", with why; a change a dead worker recorded a send for may have
    landed, so it goes to the verification read like everything sent, and the
    push ends once what it did send is verified.
    """
    with transaction.atomic():
        push = RatePlanPush.objects.select_for_update().filter(pk=push_id, status=PushStatus.RUNNING).first()
        if push is None:
            return None
        now = timezone.now()
        later = RatePlanChange.objects.filter(push=push, batch__gte=from_batch, status__in=CHANGE_OPEN_STATUSES)
        stopped = f"the push stopped before batch {from_batch}: the billing period would end first"
        later.filter(sends=0).update(status=ChangeStatus.NOT_SENT, finished_at=now, error=f"Not sent: {stopped}.")
        later.filter(sends__gt=0).update(
            status=ChangeStatus.FAILED, finished_at=now,
            error=f"Outcome unknown: {stopped}, after a send; the verification read tells whether it landed.")
        RatePlanPushBatch.objects.filter(push=push, number__gte=from_batch).exclude(status=BatchStatus.DONE).update(
            status=BatchStatus.DONE, finished_at=now, lease_expires_at=None)
        counts = push_counts_refresh(push_id=push.pk)
        push.refresh_from_db()
        push.stopped_early, push.status, push.claimed_by, push.lease_expires_at = reason, PushStatus.VERIFYING, "", None
        push.save(update_fields=["stopped_early", "status", "claimed_by", "lease_expires_at"])
        enqueue_on_commit(VERIFY_TASK, push.pk)
    log.warning("push %s stopped before batch %s: %s (%s applied, %s not sent)", push_id, from_batch, reason,
                f"{counts.applied:,}", f"{counts.not_sent:,}")
    return push


def push_finish(*, push_id: int, claimed_by: str) -> RatePlanPush | None:
    """End a verified push: succeeded, finished with errors, or failed when push_abort stopped it; then report."""
    with transaction.atomic():
        push = RatePlanPush.objects.select_for_update().filter(
            pk=push_id, status=PushStatus.VERIFYING, claimed_by=claimed_by).first()
        if push is None:
            return None
        counts = push_counts_refresh(push_id=push_id)
        push.refresh_from_db()
        clean = counts.applied == counts.total and counts.verified == counts.total
        push.finished_at = timezone.now()
        push.claimed_by, push.lease_expires_at = "", None
        if push.error:
            # Stopped by push_abort: verified only to settle its uncertain sends; it stays failed, with why.
            push.status = PushStatus.FAILED
        else:
            push.status = PushStatus.SUCCEEDED if clean else PushStatus.FINISHED_WITH_ERRORS
            push.measured_rate = counts.processed * 60 / push.send_seconds if push.send_seconds > 0 else None
        push.save(update_fields=["status", "finished_at", "claimed_by", "lease_expires_at", "measured_rate"])
    report_email(push)
    return push
