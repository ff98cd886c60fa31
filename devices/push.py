"""Pushing rate-plan changes to a carrier account: Go/No-Go, batches as work items, exactly-once sends, verification."""
from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field, fields

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Count, F, Max, Q
from django.utils import timezone

from carrieropt.errors import Conflict, ValidationFailed
from carrieropt.tasks import enqueue_on_commit
from carriers import (
    CarrierClient,
    CarrierError,
    CarrierNotFound,
    CarrierProtocolError,
    CarrierRequestRejected,
    CarrierUnavailable,
    CircuitBreaker,
    CircuitOpenError,
    IntegrationNotSupported,
    RetryPolicy,
)
from devices.clients import client_for
from devices.models import (
    CHANGE_OPEN_STATUSES,
    PUSH_ACTIVE_STATUSES,
    BatchStatus,
    ChangeStatus,
    Device,
    PushDecision,
    PushStatus,
    RatePlanChange,
    RatePlanPush,
    RatePlanPushBatch,
)
from rateplans.models import BillingPeriod, RatePlan, ServiceProvider

log = logging.getLogger(__name__)

BATCH_TASK = "devices.push_tasks.push_batch_task"
VERIFY_TASK = "devices.push_tasks.push_verify_task"
NO_GO_SUBJECT = "Rate plan update not started: it could not finish before the billing period ends"
REPORT_SUBJECT = "Rate plan update finished for {account}: {applied} applied, {attention} need attention"
REPORT_LINES = 500
CALLS_PER_CHANGE = 2  # the read just before, and the PUT
COUNTS_EVERY = 2.0  # seconds between refreshes of a running push's stored counts (admin, dashboards)


def _account_wide(exc: BaseException) -> bool:
    """An error no later change could escape (open circuit, refused credentials, a broken account URL): stop the push."""
    if isinstance(exc, CircuitOpenError):
        return True
    return (isinstance(exc, CarrierError) and not exc.per_device
            and not isinstance(exc, (CarrierUnavailable, CarrierProtocolError)))


def _setting(name: str, default):
    return getattr(settings, name, default)


@dataclass(frozen=True)
class PushTuning:
    """Timeouts, attempts and leases of one push, fixed when it is created.

    Stored on the push so that every worker of it, whatever its own settings,
    agrees on how long another worker's PUT can still be on its way.
    """

    batch_size: int = 250
    timeout: float = 30.0  # seconds per carrier call (connect, and each read)
    read_attempts: int = 5  # a read is repeated freely: it changes nothing
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    send_attempts: int = 8  # PUTs per change at most, each after a read showed the previous did not land
    lease_seconds: float = 120.0
    resend_after: float = 90.0  # computed in from_settings: how long a recorded PUT can still be on its way
    verify_delay: float = 30.0
    run_seconds: float = 480.0  # a task gives its batch back after this long, well inside django-q2's timeout
    max_batch_claims: int = 10

    @classmethod
    def from_settings(cls, *, provider: ServiceProvider) -> PushTuning:
        timeout = float(_setting("PUSH_CALL_TIMEOUT", cls.timeout))
        # The longest a PUT can be on its way after the worker recorded it: connect + read timeout, the wait
        # for the account's rate limiter, and a margin for clock skew between the workers' machines.
        resend_after = (2 * timeout + provider.max_concurrency / float(provider.rate_limit_per_second)
                        + float(_setting("PUSH_RESEND_MARGIN_SECONDS", 15.0)))
        return cls(
            batch_size=int(_setting("PUSH_BATCH_SIZE", cls.batch_size)),
            timeout=timeout,
            read_attempts=int(_setting("PUSH_READ_ATTEMPTS", cls.read_attempts)),
            backoff_base=float(_setting("PUSH_BACKOFF_BASE", cls.backoff_base)),
            backoff_cap=float(_setting("PUSH_BACKOFF_CAP", cls.backoff_cap)),
            send_attempts=int(_setting("PUSH_SEND_ATTEMPTS", cls.send_attempts)),
            lease_seconds=max(float(_setting("PUSH_LEASE_SECONDS", cls.lease_seconds)), 1.0),
            resend_after=resend_after,
            verify_delay=float(_setting("PUSH_VERIFY_DELAY_SECONDS", cls.verify_delay)),
            run_seconds=float(_setting("PUSH_RUN_SECONDS", 0.8 * settings.Q_CLUSTER["timeout"])),
            max_batch_claims=int(_setting("PUSH_MAX_BATCH_CLAIMS", cls.max_batch_claims)),
        )

    @classmethod
    def of(cls, push: RatePlanPush) -> PushTuning:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (push.tuning or {}).items() if k in known})

    def as_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PlannedChange:
    """A SIM to move, as the optimization saw it."""

    device_id: int
    iccid: str
    from_plan_id: int | None
    from_plan_code: str
    to_plan_id: int
    to_plan_code: str


@dataclass(frozen=True)
class GoNoGo:
    go: bool
    reason: str
    minutes_needed: float
    minutes_left: float
    rate_per_minute: float
    rate_source: str
    period_ends_at: dt.datetime


class PushAlreadyRunning(Conflict):
    code = "push_running"


def _worker() -> str:
    # host:pid identifies the process (tests SIGKILL it); the suffix makes every claim distinct.
    return f"{socket.gethostname()}:{os.getpid()}/{uuid.uuid4().hex[:8]}"


# -- reads ---------------------------------------------------------------------------------------------

def push_rate_best(*, provider: ServiceProvider) -> tuple[float, str]:
    """SIMs per minute to plan with: the best rate measured on an earlier push of the account, else the default,
    and never more than the account's rate limit allows (each SIM costs a read and a PUT).

    A push counts once it processed PUSH_RATE_MIN_SAMPLE SIMs: a rate measured
    over a handful of SIMs sent in parallel says nothing about a sustained batch.
    The cap matters when the limit was lowered since that push was measured.
    """
    sample = int(_setting("PUSH_RATE_MIN_SAMPLE", 50))
    ceiling = float(provider.rate_limit_per_second) * 60 / CALLS_PER_CHANGE
    best = (RatePlanPush.objects.filter(provider=provider, measured_rate__gt=0,
                                        status__in=[PushStatus.SUCCEEDED, PushStatus.FINISHED_WITH_ERRORS])
            .annotate(processed=F("applied") + F("rejected") + F("discrepancies") + F("failed"))
            .filter(processed__gte=sample).order_by("-measured_rate", "-pk").first())
    if best is not None:
        rate, source = best.measured_rate, f"best measured rate: push #{best.pk}, {best.measured_rate:.1f} SIMs/min"
    else:
        rate = float(_setting("PUSH_DEFAULT_RATE_PER_MINUTE", 60))
        source = f"default rate {rate:g} SIMs/min (no earlier push of this account measured one)"
    if rate > ceiling:
        return ceiling, (f"{source}, capped at {ceiling:.1f} SIMs/min by the account's limit of "
                         f"{provider.rate_limit_per_second} calls/s")
    return rate, source


def push_decide(*, provider: ServiceProvider, period: BillingPeriod, changes: int, batch_size: int,
                now: dt.datetime | None = None) -> GoNoGo:
    """Go only when the minutes left in the billing period exceed the minutes needed by PUSH_MIN_SLACK_MINUTES."""
    now = now or timezone.now()
    slack = float(_setting("PUSH_MIN_SLACK_MINUTES", 10))
    rate, source = push_rate_best(provider=provider)
    needed = min(changes, batch_size) / rate
    ends = period.ends_at()
    left = (ends - now).total_seconds() / 60
    local_end = ends.astimezone(provider.tz)
    facts = (f"{changes:,} changes need {needed:.1f} min at {rate:.1f} SIMs/min ({source}); "
             f"the billing period ends {local_end:%Y-%m-%d %H:%M %Z}, {left:,.1f} min from now")
    go = left - needed >= slack
    if go:
        reason = f"Go: {facts}, leaving {left - needed:,.1f} min (at least {slack:g} needed)."
    else:
        reason = (f"No-Go: {facts}; at least {slack:g} min must remain after the update, so it was not started "
                  f"and nothing was changed on the carrier.")
    return GoNoGo(go=go, reason=reason, minutes_needed=needed, minutes_left=left, rate_per_minute=rate,
                  rate_source=source, period_ends_at=ends)


@dataclass(frozen=True)
class PushCounts:
    total: int
    pending: int
    sending: int
    applied: int
    rejected: int
    discrepancy: int
    failed: int
    verified: int
    verify_mismatches: int

    @property
    def remaining(self) -> int:
        return self.pending + self.sending

    @property
    def processed(self) -> int:
        return self.applied + self.rejected + self.discrepancy + self.failed


def push_counts(*, push_id: int) -> PushCounts:
    """Live counts of a push's changes, in one query."""
    # Aliases must not be field names ("verified"), or the ORM takes them for the aggregates.
    status = {f"n_{s}": Count("pk", filter=Q(status=s)) for s in ChangeStatus.values}
    row = RatePlanChange.objects.filter(push_id=push_id).aggregate(
        n_total=Count("pk"), n_verified=Count("pk", filter=Q(verified=True)),
        n_verify_mismatches=Count("pk", filter=Q(status=ChangeStatus.APPLIED, verified=False, verify_reads__gte=2)),
        **status)
    return PushCounts(**{name[2:]: value for name, value in row.items()})


def push_rate_live(*, push: RatePlanPush, processed: int, now: dt.datetime | None = None) -> float | None:
    """SIMs per minute: the measured rate once the push ended, else the rate so far."""
    if push.measured_rate is not None or not push.is_active or push.started_at is None:
        return push.measured_rate
    seconds = ((now or timezone.now()) - push.started_at).total_seconds()
    return processed * 60 / seconds if seconds > 0 and processed else None


# -- create --------------------------------------------------------------------------------------------

def push_create(*, provider: ServiceProvider, changes: Sequence[PlannedChange], period: BillingPeriod,
                session_id: int | None = None, trigger: str = "manual", now: dt.datetime | None = None) -> RatePlanPush:
    """Record a push and its changes, decide Go/No-Go, and queue its first batch (Go) or e-mail why not (No-Go).

    Every change is a row before anything is sent. A No-Go records the push
    with its reason and sends nothing. `now` is the moment the decision is
    taken for (default: now).
    """
    now = now or timezone.now()
    if not provider.is_jasper_family:
        raise IntegrationNotSupported(
            f"Carrier account {provider.name!r} uses {provider.integration}; rate-plan updates are only "
            f"implemented for the Jasper family (Jasper, POD19, TMobileJasper, Rogers).", field="integration")
    devices = [c.device_id for c in changes]
    if len(set(devices)) != len(devices):
        raise ValidationFailed("A push may change each SIM once; the change list names a SIM twice.", field="changes")
    if any(c.from_plan_code == c.to_plan_code for c in changes):
        raise ValidationFailed("A change must move a SIM to a different rate plan.", field="changes")
    running = RatePlanPush.objects.filter(provider=provider, status__in=PUSH_ACTIVE_STATUSES).first()
    if running is not None:
        raise _already_running(running)
    tuning = PushTuning.from_settings(provider=provider)
    decision = push_decide(provider=provider, period=period, changes=len(changes), batch_size=tuning.batch_size, now=now)
    ordered = sorted(changes, key=lambda c: c.iccid)
    clock = timezone.now()  # timestamps are real time even when the decision is asked about another moment
    if not decision.go:
        status = PushStatus.NO_GO
    else:
        status = PushStatus.RUNNING if ordered else PushStatus.SUCCEEDED
    try:
        with transaction.atomic():
            push = RatePlanPush.objects.create(
                provider=provider, session_id=session_id, trigger=trigger, status=status,
                decision=PushDecision.GO if decision.go else PushDecision.NO_GO, decision_reason=decision.reason,
                period_ends_at=decision.period_ends_at, minutes_left=decision.minutes_left,
                minutes_needed=decision.minutes_needed, rate_per_minute=decision.rate_per_minute,
                rate_source=decision.rate_source, batch_size=tuning.batch_size, total=len(ordered),
                tuning=tuning.as_json(), started_at=clock if status == PushStatus.RUNNING else None,
                finished_at=None if status == PushStatus.RUNNING else clock,
            )
            if status == PushStatus.RUNNING:
                size = tuning.batch_size
                RatePlanChange.objects.bulk_create([
                    RatePlanChange(push=push, device_id=c.device_id, iccid=c.iccid, from_plan_id=c.from_plan_id,
                                   from_plan_code=c.from_plan_code, to_plan_id=c.to_plan_id,
                                   to_plan_code=c.to_plan_code, batch=i // size + 1)
                    for i, c in enumerate(ordered)], batch_size=1000)
                batches = RatePlanPushBatch.objects.bulk_create([
                    RatePlanPushBatch(push=push, number=n + 1) for n in range((len(ordered) + size - 1) // size)])
                first = batches[0].pk or RatePlanPushBatch.objects.get(push=push, number=1).pk
                enqueue_on_commit(BATCH_TASK, first)
    except IntegrityError:
        running = RatePlanPush.objects.filter(provider=provider, status__in=PUSH_ACTIVE_STATUSES).first()
        if running is None:
            raise
        raise _already_running(running) from None
    log.info("push %s for %s: %s", push.pk, provider, decision.reason)
    if not decision.go:
        _no_go_email(push)
    return push


def _already_running(push: RatePlanPush) -> PushAlreadyRunning:
    return PushAlreadyRunning(
        f"Rate plan update #{push.pk} of this carrier account is still {push.status}; wait for it to finish.",
        extra={"active_push": push.pk})


def _no_go_email(push: RatePlanPush) -> None:
    provider = push.provider
    body = (f"Carrier account: {provider.name} ({provider.integration})\n"
            f"Rate plan update #{push.pk}" + (f" for optimization session {push.session_id}" if push.session_id else "")
            + f"\n\n{push.decision_reason}\n\nNo SIM was changed on the carrier: every SIM stays on its current "
            f"rate plan for this billing period.\n")
    send_mail(NO_GO_SUBJECT, body, None, provider.alert_recipients, fail_silently=True)


# -- one batch -----------------------------------------------------------------------------------------

def _clients(provider: ServiceProvider, tuning: PushTuning) -> tuple[CarrierClient, CarrierClient]:
    """A reader that retries freely and a writer that never repeats a PUT on its own (the push decides, after a read).

    Both share the account's rate limiter (client_for keys it by account) and one
    circuit breaker; its threshold is above the calls in flight, since one carrier
    hiccup can fail all of them at once.
    """
    breaker = CircuitBreaker(threshold=max(5, 3 * provider.max_concurrency))
    common = {"timeout": tuning.timeout, "connect_timeout": tuning.timeout, "breaker": breaker}
    reader = client_for(provider, retry=RetryPolicy(max_attempts=tuning.read_attempts, backoff_base=tuning.backoff_base,
                                                    backoff_cap=tuning.backoff_cap), **common)
    writer = client_for(provider, retry=RetryPolicy(max_attempts=1), **common)
    return reader, writer


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


def _read_plan(client: CarrierClient, iccid: str, delay: float = 0.0) -> str | None:
    if delay > 0:
        time.sleep(delay)
    return client.get_device(iccid).rate_plan


def _send_plan(client: CarrierClient, iccid: str, plan: str) -> tuple[Exception | None, float]:
    """PUT once: (None, seconds) when the carrier accepted, else (the error, seconds until it came)."""
    started = time.monotonic()
    try:
        client.change_rate_plan(iccid, plan)
    except Exception as exc:  # noqa: BLE001 — handed to the calling thread, which decides
        return exc, time.monotonic() - started
    return None, time.monotonic() - started


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
    started: float = field(default_factory=time.monotonic)

    def run(self) -> str:
        provider = self.push.provider
        self.plan_ids = dict(RatePlan.objects.filter(provider=provider).values_list("code", "pk"))
        todo = deque(self._open_jobs())
        deferred: list[tuple[float, _Job]] = []
        in_flight: dict[Future, tuple[_Job, str]] = {}
        quarter = self.tuning.lease_seconds / 4
        next_renew, next_counts = time.monotonic() + quarter, time.monotonic() + COUNTS_EVERY
        reader, writer = _clients(provider, self.tuning)
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
                            in_flight[pool.submit(_read_plan, reader, job.iccid)] = (job, "read")
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
                            in_flight[pool.submit(_send_plan, writer, job.iccid, job.to_plan_code)] = (job, "send")
                        elif step is not None:
                            in_flight[pool.submit(_read_plan, reader, job.iccid, step)] = (job, "read")
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
                _device_show_plan(job.device_id, carrier_plan, self.plan_ids)

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
        if _account_wide(exc):
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
        if _account_wide(exc):
            self.stopping, self.abort_reason = "abort", message
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


def _device_show_plan(device_id: int, code: str, plan_ids: dict[str, int]) -> None:
    """The device row shows what the carrier just said (the next sync would say the same)."""
    Device.objects.filter(pk=device_id).update(rate_plan_id=plan_ids.get(code), rate_plan_code=code)


def push_batch_run(*, batch_id: int, worker: str | None = None,
                   progress: Callable[[PushCounts], None] | None = None) -> str:
    """Run one batch if this delivery wins its claim. Returns "not_ours", "done", "yield", "lost" or "abort".

    A duplicate or late delivery of the task finds the batch claimed or done and
    does nothing. The next batch is queued only when this one is done, so an
    account never sees more than its own rate limit from one push.
    """
    batch = RatePlanPushBatch.objects.select_related("push__provider").filter(pk=batch_id).first()
    if batch is None or batch.push.status != PushStatus.RUNNING:
        return "not_ours"
    push, tuning = batch.push, PushTuning.of(batch.push)
    claimed_by = worker or _worker()
    now = timezone.now()
    if batch.attempts >= tuning.max_batch_claims and batch.status == BatchStatus.PENDING:
        _batch_give_up(batch, reason=f"batch {batch.number} was claimed {batch.attempts} times without finishing")
        push_advance(push_id=push.pk)
        return "abort"
    claimed = RatePlanPushBatch.objects.filter(pk=batch_id, status=BatchStatus.PENDING).update(
        status=BatchStatus.RUNNING, claimed_by=claimed_by, attempts=F("attempts") + 1,
        lease_expires_at=now + dt.timedelta(seconds=tuning.lease_seconds), started_at=now)
    if not claimed:
        return "not_ours"
    started = time.monotonic()
    runner = _BatchRun(batch=batch, push=push, tuning=tuning, claimed_by=claimed_by, progress=progress)
    try:
        outcome = runner.run()
    finally:
        RatePlanPush.objects.filter(pk=push.pk).update(send_seconds=F("send_seconds") + (time.monotonic() - started))
        push_counts_refresh(push_id=push.pk)
    mine = RatePlanPushBatch.objects.filter(pk=batch_id, status=BatchStatus.RUNNING, claimed_by=claimed_by)
    if outcome == "abort":
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


def push_counts_refresh(*, push_id: int) -> PushCounts:
    counts = push_counts(push_id=push_id)
    RatePlanPush.objects.filter(pk=push_id).update(
        applied=counts.applied, rejected=counts.rejected, discrepancies=counts.discrepancy, failed=counts.failed,
        verify_mismatches=counts.verify_mismatches)
    return counts


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
        _report_email(push)
    return push


# -- verification --------------------------------------------------------------------------------------

def _read_many(client: CarrierClient, iccids: Iterable[str], *, concurrency: int,
               tick: Callable[[], bool]) -> dict[str, str | CarrierError] | None:
    """Read the plan of every ICCID; None when `tick` (called at least every few seconds) says to stop."""
    results: dict[str, str | CarrierError] = {}
    todo = deque(iccids)
    in_flight: dict[Future, str] = {}
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="push-verify") as pool:
        while todo or in_flight:
            while todo and len(in_flight) < 2 * concurrency:
                iccid = todo.popleft()
                in_flight[pool.submit(_read_plan, client, iccid)] = iccid
            done, _ = wait(in_flight, timeout=1, return_when=FIRST_COMPLETED)
            for future in done:
                iccid = in_flight.pop(future)
                try:
                    results[iccid] = future.result() or ""
                except CarrierError as exc:
                    results[iccid] = exc
            if not tick():
                for future in in_flight:
                    future.cancel()
                return None
    return results


def push_verify_run(*, push_id: int, worker: str | None = None) -> str:
    """Read back every SIM the push changed (or may have changed); re-read mismatches once after a delay.

    A change that failed after a send but shows the new plan is counted applied;
    an applied one that does not show it is a verification mismatch, e-mailed.
    """
    push = RatePlanPush.objects.select_related("provider").filter(pk=push_id).first()
    if push is None or push.status != PushStatus.VERIFYING:
        return "not_ours"
    tuning, claimed_by, now = PushTuning.of(push), worker or _worker(), timezone.now()
    lease = dt.timedelta(seconds=tuning.lease_seconds)
    claimed = (RatePlanPush.objects.filter(pk=push_id, status=PushStatus.VERIFYING)
               .filter(Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now))
               .update(claimed_by=claimed_by, lease_expires_at=now + lease, verify_started_at=now))
    if not claimed:
        return "not_ours"
    started = time.monotonic()
    renew_at = [started + tuning.lease_seconds / 4]

    def tick() -> bool:
        """Keep the lease while reading; False when out of time or the lease went to another worker."""
        if time.monotonic() - started > tuning.run_seconds:
            return False
        if time.monotonic() < renew_at[0]:
            return True
        renew_at[0] = time.monotonic() + tuning.lease_seconds / 4
        return RatePlanPush.objects.filter(pk=push_id, status=PushStatus.VERIFYING, claimed_by=claimed_by).update(
            lease_expires_at=timezone.now() + lease) == 1

    plan_ids = dict(RatePlan.objects.filter(provider=push.provider).values_list("code", "pk"))
    sent = Q(status=ChangeStatus.APPLIED) | Q(status=ChangeStatus.FAILED, sends__gt=0)
    reader, writer = _clients(push.provider, tuning)
    writer.close()  # verification only reads
    try:
        for reads, pause in ((0, 0.0), (1, tuning.verify_delay)):
            targets = list(RatePlanChange.objects.filter(sent, push=push, verify_reads=reads)
                           .exclude(verified=True).order_by("iccid"))
            if not targets:
                continue
            if pause and not _sleep(pause, tick):
                return _verify_release(push_id, claimed_by)
            results = _read_many(reader, [c.iccid for c in targets], concurrency=push.provider.max_concurrency,
                                 tick=tick)
            if results is None:
                return _verify_release(push_id, claimed_by)
            _verify_record(targets, results, plan_ids=plan_ids, final=reads == 1)
    finally:
        reader.close()
    push_finish(push_id=push_id, claimed_by=claimed_by)
    return "done"


def _sleep(seconds: float, tick: Callable[[], bool]) -> bool:
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(left, 5.0))
        if not tick():
            return False
    return True


def _verify_release(push_id: int, claimed_by: str) -> str:
    # Out of time (or lease lost): give the verification back; reads already recorded are not repeated.
    with transaction.atomic():
        if RatePlanPush.objects.filter(pk=push_id, status=PushStatus.VERIFYING, claimed_by=claimed_by).update(
                claimed_by="", lease_expires_at=None):
            enqueue_on_commit(VERIFY_TASK, push_id)
    return "yield"


def _verify_record(targets: list[RatePlanChange], results: dict[str, str | CarrierError], *,
                   plan_ids: dict[str, int], final: bool) -> None:
    now = timezone.now()
    with transaction.atomic():
        for change in targets:
            answer = results.get(change.iccid)
            change.verify_reads += 1
            if isinstance(answer, CarrierError) or answer is None:
                change.verified = None
                change.verified_plan = ""
                if final:
                    change.error = (change.error + " " if change.error else "") + f"Verification read failed: {answer}"
                continue
            change.verified_plan = answer
            change.verified = answer == change.to_plan_code
            if change.verified and change.status == ChangeStatus.FAILED:
                change.status = ChangeStatus.APPLIED
                change.error = f"{change.error} The verification read shows the new plan: a send landed.".strip()
                change.finished_at = now
                Device.objects.filter(pk=change.device_id).update(rate_plan_id=change.to_plan_id,
                                                                  rate_plan_code=change.to_plan_code)
            elif not change.verified and final and change.status == ChangeStatus.APPLIED:
                _device_show_plan(change.device_id, answer, plan_ids)
        RatePlanChange.objects.bulk_update(
            targets, ["verify_reads", "verified", "verified_plan", "status", "error", "finished_at"], batch_size=500)


def push_finish(*, push_id: int, claimed_by: str) -> RatePlanPush | None:
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
    _report_email(push)
    return push


def _report_email(push: RatePlanPush) -> None:
    """What was applied, and every SIM that needs a look: skipped, refused, failed or not showing the new plan."""
    counts = push_counts(push_id=push.pk)
    changes = push.changes.order_by("iccid")
    sections = [
        ("Skipped: the SIM's plan changed on the carrier after the optimization", changes.filter(status=ChangeStatus.DISCREPANCY)),
        ("Refused by the carrier", changes.filter(status=ChangeStatus.REJECTED)),
        ("Failed", changes.filter(status=ChangeStatus.FAILED)),
        ("Applied, but the carrier does not show the new plan (read twice)",
         changes.filter(status=ChangeStatus.APPLIED, verified=False)),
        ("Applied, but could not be read back", changes.filter(status=ChangeStatus.APPLIED, verified__isnull=True)),
    ]
    attention = counts.total - counts.verified
    lines = [f"Carrier account: {push.provider.name} ({push.provider.integration})",
             f"Rate plan update #{push.pk}" + (f" for optimization session {push.session_id}" if push.session_id else "")
             + f": {push.get_status_display()}.", push.error,
             f"{counts.total:,} changes: {counts.applied:,} applied ({counts.verified:,} verified on the carrier), "
             f"{counts.discrepancy:,} skipped as discrepancies, {counts.rejected:,} refused, {counts.failed:,} failed.",
             f"Measured rate: {push.measured_rate:.1f} SIMs/min." if push.measured_rate else ""]
    for title, rows in sections:
        total = rows.count()
        if not total:
            continue
        lines += ["", f"{title}: {total:,}"]
        for change in rows[:REPORT_LINES]:
            shown = change.verified_plan or change.carrier_plan
            lines.append(f"  {change.iccid}  {change.from_plan_code} -> {change.to_plan_code}"
                         + (f"  carrier shows {shown}" if shown and shown != change.to_plan_code else "")
                         + (f"  {change.error}" if change.error else ""))
        if total > REPORT_LINES:
            lines.append(f"  … and {total - REPORT_LINES:,} more (see the admin or the API)")
    subject = REPORT_SUBJECT.format(account=push.provider.name, applied=counts.applied, attention=attention)
    send_mail(subject, "\n".join(line for line in lines if line), None, push.provider.alert_recipients, fail_silently=True)


# -- the watchdog ----------------------------------------------------------------------------------------

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
