"""One batch of a push: claimed by one worker, HTTP in threads, every change settled exactly once."""
from __future__ import annotations

import datetime as dt
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from carrieropt.tasks import enqueue_on_commit
from carriers import CarrierError, CarrierNotFound, CarrierRequestRejected, RetryPolicy
from devices.alerts import carrier_error_alert
from devices.models import Device
from pushes import clients
from pushes.counts import PushCounts, push_counts_refresh
from pushes.decide import batch_fits
from pushes.lifecycle import BATCH_TASK, push_abort, push_advance, push_stop_in_time
from pushes.models import (
    CHANGE_OPEN_STATUSES,
    BatchStatus,
    ChangeStatus,
    PushStatus,
    RatePlanChange,
    RatePlanPush,
    RatePlanPushBatch,
)
from pushes.tuning import PushTuning, worker_name
from rateplans.models import RatePlan

log = logging.getLogger(__name__)

COUNTS_EVERY = 2.0  # seconds between refreshes of a running push's stored counts (admin, dashboards)


@dataclass
class _Job:
    """One change as this worker last saw it in the database.

    (status, attempts, sends) is the fence: every write is a compare-and-set
    from exactly that state to the next, so of two workers acting on the same
    change only the first write lands and the other one stops.
    """

    id: int
    device_id: int
    iccid: str
    from_plan_code: str
    to_plan_code: str
    to_plan_id: int
    status: str
    attempts: int
    sends: int
    sent_at: dt.datetime | None
    mine: bool = False  # this worker recorded the latest send
    last_error: str = ""

    def fence(self):
        return RatePlanChange.objects.filter(pk=self.id, status=self.status, attempts=self.attempts, sends=self.sends)


_JOB_FIELDS = ["id", "device_id", "iccid", "from_plan_code", "to_plan_code", "to_plan_id", "status", "attempts",
               "sends", "sent_at"]


@dataclass
class _BatchRun:
    """Sends one batch: HTTP in `max_concurrency` threads, every database write in the calling thread.

    Per change: read the SIM from the carrier; if it still has the plan the
    optimization saw, record the PUT (status "sending", sends + 1, committed)
    and only then send it. A PUT that fails without a clear refusal is
    followed by another read, never by a blind resend.
    """

    batch: RatePlanPushBatch
    push: RatePlanPush
    tuning: PushTuning
    claimed_by: str
    plan_ids: dict[str, int] = field(default_factory=dict)
    progress: Callable[[PushCounts], None] | None = None
    stopping: str = ""  # "", "yield", "lost" or "abort"
    abort_reason: str = ""
    abort_error: BaseException | None = None
    started: float = field(default_factory=time.monotonic)

    def run(self) -> str:
        provider = self.push.provider
        self.plan_ids = dict(RatePlan.objects.filter(provider=provider).values_list("code", "pk"))
        todo = deque(self._open_jobs())
        deferred: list[tuple[float, _Job]] = []
        in_flight: dict[Future, tuple[_Job, str]] = {}
        quarter = self.tuning.lease_seconds / 4
        next_renew, next_counts = time.monotonic() + quarter, time.monotonic() + COUNTS_EVERY
        reader, writer = clients.carrier_clients(provider, self.tuning)
        pool = ThreadPoolExecutor(max_workers=provider.max_concurrency, thread_name_prefix="push")
        try:
            while True:
                if not self.stopping:
                    for item in [item for item in deferred if item[0] <= time.monotonic()]:
                        deferred.remove(item)
                        todo.append(item[1])
                    while todo and len(in_flight) < provider.max_concurrency:
                        job = todo.popleft()
                        wait_for = self._wait_before_reading(job)
                        if wait_for > 0:
                            deferred.append((time.monotonic() + wait_for, job))
                        else:
                            in_flight[pool.submit(clients.read_plan, reader, job.iccid)] = (job, "read")
                if not in_flight:
                    if not deferred or self.stopping:
                        break
                    time.sleep(max(0.01, min(min(t for t, _ in deferred) - time.monotonic(), quarter)))
                else:
                    done, _ = wait(in_flight, timeout=quarter, return_when=FIRST_COMPLETED)
                    for future in done:
                        job, kind = in_flight.pop(future)
                        step = self._after_read(job, future) if kind == "read" else self._after_send(job, future)
                        if step == "send":
                            in_flight[pool.submit(clients.send_plan, writer, job.iccid, job.to_plan_code)] = (job, "send")
                        elif step is not None:
                            in_flight[pool.submit(clients.read_plan, reader, job.iccid, step)] = (job, "read")
                if time.monotonic() >= next_counts:
                    next_counts = time.monotonic() + COUNTS_EVERY
                    counts = push_counts_refresh(push_id=self.push.pk)
                    if self.progress is not None:
                        self.progress(counts)
                if time.monotonic() >= next_renew:
                    next_renew = time.monotonic() + quarter
                    self._renew()
                if not self.stopping and time.monotonic() - self.started > self.tuning.run_seconds:
                    self.stopping = "yield"
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            reader.close()
            writer.close()
        if self.stopping in ("lost", "abort"):
            return self.stopping
        open_left = RatePlanChange.objects.filter(push=self.push, batch=self.batch.number,
                                                  status__in=CHANGE_OPEN_STATUSES).exists()
        return "yield" if open_left else "done"

    def _open_jobs(self) -> list[_Job]:
        qs = (RatePlanChange.objects.filter(push=self.push, batch=self.batch.number, status__in=CHANGE_OPEN_STATUSES)
              .order_by("iccid").values(*_JOB_FIELDS))
        return [_Job(**row) for row in qs]

    def _wait_before_reading(self, job: _Job) -> float:
        """Seconds until a change left "sending" by another worker may be read and decided on.

        That worker recorded a PUT at sent_at; tuning.resend_after later the PUT has
        certainly ended (landed or not), so a read then tells the truth about it.
        """
        if job.status != ChangeStatus.SENDING or job.sent_at is None:
            return 0.0
        return (job.sent_at + dt.timedelta(seconds=self.tuning.resend_after) - timezone.now()).total_seconds()

    # -- writes, each a compare-and-set from the state last seen ---------------------------------------------
    def _record_send(self, job: _Job) -> bool:
        """Commit "this PUT is about to go" before it goes; False when another worker moved the change first."""
        now = timezone.now()
        # A first send, or taking over another worker's change, counts as a claim; sending again on our own does not.
        attempts = job.attempts if job.mine else job.attempts + 1
        if job.fence().update(status=ChangeStatus.SENDING, attempts=attempts, sends=job.sends + 1, sent_at=now) != 1:
            return False
        job.status, job.attempts, job.sends, job.sent_at, job.mine = ChangeStatus.SENDING, attempts, job.sends + 1, now, True
        return True

    def _finish(self, job: _Job, status: str, *, error: str = "", carrier_plan: str | None = None) -> None:
        with transaction.atomic():
            values = {"status": status, "error": error[:2000], "finished_at": timezone.now()}
            if carrier_plan is not None:
                values["carrier_plan"] = carrier_plan
            if job.fence().update(**values) != 1:
                return
            if status == ChangeStatus.APPLIED:
                # The carrier accepted: the device's current plan is now the recommended one.
                Device.objects.filter(pk=job.device_id).update(rate_plan_id=job.to_plan_id,
                                                               rate_plan_code=job.to_plan_code)
            elif status == ChangeStatus.DISCREPANCY and carrier_plan:
                device_show_plan(job.device_id, carrier_plan, self.plan_ids)

    # -- steps ---------------------------------------------------------------------------------------
    def _after_read(self, job: _Job, future: Future) -> str | float | None:
        """What the read says to do: "send", or None (settled, or no longer ours)."""
        try:
            plan = future.result() or ""
        except Exception as exc:  # noqa: BLE001 — each failure ends this one change, visibly
            return self._failed(job, exc, doing="reading the SIM")
        if plan == job.to_plan_code:
            if job.sends:
                # A PUT recorded earlier (ours, or a dead worker's) landed though its answer was lost.
                self._finish(job, ChangeStatus.APPLIED, carrier_plan=plan)
            elif self._sent_before(job):
                # An earlier push stopped after sending this very change, and could not read it back: it landed.
                self._finish(job, ChangeStatus.APPLIED, carrier_plan=plan, error=(
                    "Nothing sent: the carrier already shows the new plan, sent by an earlier push that stopped "
                    "before it could read the SIM back."))
            else:
                self._finish(job, ChangeStatus.DISCREPANCY, carrier_plan=plan, error=(
                    f"The carrier already shows the recommended plan {plan!r}; the optimization saw "
                    f"{job.from_plan_code!r}, so the SIM was changed outside carrieropt. Nothing sent."))
            return None
        if plan != job.from_plan_code:
            self._finish(job, ChangeStatus.DISCREPANCY, carrier_plan=plan, error=(
                f"The carrier shows rate plan {plan!r}, the optimization assumed {job.from_plan_code!r}: the SIM "
                f"was changed after the optimization. Not changed to {job.to_plan_code!r}."))
            return None
        if self.stopping == "abort":
            self._finish(job, ChangeStatus.FAILED, carrier_plan=plan, error=f"Not sent: {self.abort_reason}")
            return None
        if job.sends >= self.tuning.send_attempts:
            self._finish(job, ChangeStatus.FAILED, carrier_plan=plan, error=(
                f"Gave up after {job.sends} sends; the carrier still shows {plan!r}. Last error: {job.last_error}"))
            return None
        return "send" if self._record_send(job) else None

    def _sent_before(self, job: _Job) -> bool:
        """An earlier push failed this move after a send whose outcome no read settled."""
        return (RatePlanChange.objects.filter(device_id=job.device_id, to_plan_code=job.to_plan_code,
                                              status=ChangeStatus.FAILED, sends__gt=0, verified__isnull=True)
                .exclude(push=self.push).exists())

    def _after_send(self, job: _Job, future: Future) -> float | None:
        """None when settled; else the seconds to wait before reading the SIM again."""
        exc, seconds = future.result()
        if exc is None:
            self._finish(job, ChangeStatus.APPLIED, carrier_plan=job.to_plan_code)
            return None
        if isinstance(exc, (CarrierRequestRejected, CarrierNotFound)):
            self._finish(job, ChangeStatus.REJECTED, error=exc.message)
            return None
        if clients.account_wide(exc):
            return self._failed(job, exc, doing="sending the change")
        # Timeouts, 5xx, 429, odd answers: the PUT may have landed. Read before sending again; the next
        # send happens only if the carrier does not show the new plan.
        job.last_error = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
        delay = RetryPolicy(backoff_base=self.tuning.backoff_base, backoff_cap=self.tuning.backoff_cap).delay(
            max(0, job.sends - 1))
        if seconds >= 0.9 * self.tuning.timeout:
            # No answer in time: the carrier may still be working on it. Give it as long again before
            # the read, so the read sees the outcome rather than racing the request.
            delay = max(delay, self.tuning.timeout)
        return delay

    def _failed(self, job: _Job, exc: Exception, *, doing: str) -> None:
        message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
        if clients.account_wide(exc):
            self.stopping, self.abort_reason, self.abort_error = "abort", message, exc
        elif isinstance(exc, CarrierNotFound):
            self._finish(job, ChangeStatus.REJECTED, error=message)
            return None
        elif not isinstance(exc, CarrierError):
            log.error("push %s: unexpected error %s for ICCID %s", self.push.pk, doing, job.iccid, exc_info=exc)
        unknown = f" (after {job.sends} sends: the verification read tells whether one landed)" if job.sends else ""
        self._finish(job, ChangeStatus.FAILED, error=f"Failed while {doing}: {message}{unknown}")
        return None

    def _renew(self) -> None:
        renewed = RatePlanPushBatch.objects.filter(pk=self.batch.pk, status=BatchStatus.RUNNING,
                                                   claimed_by=self.claimed_by).update(
            lease_expires_at=timezone.now() + dt.timedelta(seconds=self.tuning.lease_seconds))
        if not renewed and self.stopping != "abort":
            log.warning("push %s batch %s: lease lost; stopping", self.push.pk, self.batch.number)
            self.stopping = "lost"


def device_show_plan(device_id: int, code: str, plan_ids: dict[str, int]) -> None:
    """The device row shows what the carrier just said (the next sync would say the same)."""
    Device.objects.filter(pk=device_id).exclude(rate_plan_code=code).update(
        rate_plan_id=plan_ids.get(code), rate_plan_code=code, plan_changed_at=timezone.now())


def push_batch_run(*, batch_id: int, worker: str | None = None,
                   progress: Callable[[PushCounts], None] | None = None, now: dt.datetime | None = None) -> str:
    """Run one batch if this delivery wins its claim. Returns "not_ours", "done", "yield", "lost", "abort" or "deadline".

    A duplicate or late delivery of the task finds the batch claimed or done and
    does nothing. The next batch is queued only when this one is done, so an
    account never sees more than its own rate limit from one push. `now` is
    the moment the time left is checked for (default: now).
    """
    batch = RatePlanPushBatch.objects.select_related("push__provider").filter(pk=batch_id).first()
    if batch is None or batch.push.status != PushStatus.RUNNING:
        return "not_ours"
    push, tuning = batch.push, PushTuning.of(batch.push)
    claimed_by = worker or worker_name()
    clock = timezone.now()  # leases are real time even when the time left is checked for another moment
    if batch.attempts >= tuning.max_batch_claims and batch.status == BatchStatus.PENDING:
        _batch_give_up(batch, reason=f"batch {batch.number} was claimed {batch.attempts} times without finishing")
        push_advance(push_id=push.pk)
        return "abort"
    claimed = RatePlanPushBatch.objects.filter(pk=batch_id, status=BatchStatus.PENDING).update(
        status=BatchStatus.RUNNING, claimed_by=claimed_by, attempts=F("attempts") + 1,
        lease_expires_at=clock + dt.timedelta(seconds=tuning.lease_seconds), started_at=clock)
    if not claimed:
        return "not_ours"
    # Checked again before every batch, at the rate this push measures: the period may end before this batch would.
    fit = batch_fits(push=push, batch_number=batch.number, verify_delay_seconds=tuning.verify_delay, now=now)
    if not fit.fits:
        push_stop_in_time(push_id=push.pk, from_batch=batch.number, reason=fit.reason)
        return "deadline"
    started = time.monotonic()
    runner = _BatchRun(batch=batch, push=push, tuning=tuning, claimed_by=claimed_by, progress=progress)
    try:
        outcome = runner.run()
    finally:
        RatePlanPush.objects.filter(pk=push.pk).update(send_seconds=F("send_seconds") + (time.monotonic() - started))
        push_counts_refresh(push_id=push.pk)
    mine = RatePlanPushBatch.objects.filter(pk=batch_id, status=BatchStatus.RUNNING, claimed_by=claimed_by)
    if outcome == "abort":
        if runner.abort_error is not None:
            carrier_error_alert(provider=push.provider, exc=runner.abort_error,
                                doing=f"pushing rate plan update #{push.pk}, batch {batch.number}")
        push_abort(push_id=push.pk, reason=runner.abort_reason)
    elif outcome == "yield":
        with transaction.atomic():
            if mine.update(status=BatchStatus.PENDING, claimed_by="", lease_expires_at=None):
                enqueue_on_commit(BATCH_TASK, batch_id)
    elif outcome == "done" and mine.update(status=BatchStatus.DONE, finished_at=timezone.now(), lease_expires_at=None):
        push_advance(push_id=push.pk)
    log.info("push %s batch %s: %s after %.1fs", push.pk, batch.number, outcome, time.monotonic() - started)
    return outcome


def _batch_give_up(batch: RatePlanPushBatch, *, reason: str) -> None:
    with transaction.atomic():
        RatePlanChange.objects.filter(push_id=batch.push_id, batch=batch.number, status__in=CHANGE_OPEN_STATUSES).update(
            status=ChangeStatus.FAILED, error=f"Abandoned: {reason}.", finished_at=timezone.now())
        RatePlanPushBatch.objects.filter(pk=batch.pk).update(status=BatchStatus.DONE, finished_at=timezone.now(),
                                                             lease_expires_at=None)
