"""Politeness towards carriers: the per-account token bucket and concurrency cap, retry backoff, circuit breaker."""
from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from carriers.errors import CircuitOpenError


class TokenBucket:
    """At most `rate` calls per second, `burst` of them back to back (GCRA form of a token bucket).

    A caller reserves its slot under the lock and sleeps outside it, so waiting
    threads queue in arrival order and the lock is never held while sleeping.
    """

    def __init__(self, rate: float, *, burst: int = 1, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        if rate <= 0:
            raise ValueError(f"rate must be > 0 calls per second, got {rate!r}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst!r}")
        self.rate = float(rate)
        self.burst = burst
        self._interval = 1.0 / self.rate
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tat = float("-inf")  # theoretical arrival time of the next call

    def set_rate(self, rate: float) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be > 0 calls per second, got {rate!r}")
        with self._lock:
            self.rate = float(rate)
            self._interval = 1.0 / self.rate

    def hold(self, seconds: float) -> None:
        """No call starts within `seconds` from now (the carrier asked us to wait: Retry-After)."""
        with self._lock:
            self._tat = max(self._tat, self._clock() + max(0.0, seconds))

    def acquire(self) -> float:
        """Wait for a token; returns the seconds waited."""
        with self._lock:
            now = self._clock()
            tat = max(self._tat, now)
            wait = max(0.0, tat - (self.burst - 1) * self._interval - now)
            self._tat = tat + self._interval
        if wait > 0:
            self._sleep(wait)
        return wait


class AccountLimiter:
    """The budget one carrier account grants: calls per second and calls in flight.

    The rate adapts (AIMD): every throttled answer halves the rate the bucket allows
    (never below `floor`) and the calls allowed in flight (never below 1); each full
    second of unthrottled calls gives back `RECOVER_SHARE` of the configured rate, and
    once the rate is back, one more call in flight. A throttled account slows down at
    once and returns to its configured budget over ~20 s of clean calls, not in one jump.
    """

    DECREASE = 0.5
    RECOVER_SHARE = 0.05
    FLOOR_SHARE = 0.05

    def __init__(self, rate: float, max_concurrency: int, *, burst: int = 1,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency!r}")
        self.rate = float(rate)
        self.max_concurrency = max_concurrency
        self.bucket = TokenBucket(rate, burst=burst, clock=clock, sleep=sleep)
        self._clock = clock
        self._lock = threading.Lock()
        self._slot_free = threading.Condition(self._lock)
        self.in_flight = 0
        self.allowed_in_flight = max_concurrency
        self.current_rate = self.rate
        self.floor = max(0.01, self.rate * self.FLOOR_SHARE)
        self._last_change = clock()

    @contextmanager
    def slot(self) -> Iterator[None]:
        # Concurrency first, token second: a thread never holds a token while it queues for a slot.
        with self._slot_free:
            while self.in_flight >= self.allowed_in_flight:
                self._slot_free.wait()
            self.in_flight += 1
        try:
            self.bucket.acquire()
            yield
        finally:
            with self._slot_free:
                self.in_flight -= 1
                self._slot_free.notify()

    def throttled(self, retry_after: float | None = None) -> float:
        """The carrier said "Rate Limit Exceeded": halve the rate and the calls in flight, honour Retry-After.
        Returns the new rate."""
        with self._lock:
            self.current_rate = max(self.floor, self.current_rate * self.DECREASE)
            self.allowed_in_flight = max(1, self.allowed_in_flight // 2)
            self._last_change = self._clock()
            self.bucket.set_rate(self.current_rate)
        if retry_after:
            self.bucket.hold(retry_after)
        return self.current_rate

    def succeeded(self) -> None:
        """An answer that was not throttling: recover towards the configured rate, slowly."""
        if self.current_rate >= self.rate and self.allowed_in_flight >= self.max_concurrency:
            return
        with self._lock:
            now = self._clock()
            seconds = now - self._last_change
            if seconds < 1.0:
                return
            self.current_rate = min(self.rate, self.current_rate + self.rate * self.RECOVER_SHARE * int(seconds))
            if self.current_rate >= self.rate:
                # The rate is back: then one more call in flight per clean second, up to the setting.
                self.allowed_in_flight = min(self.max_concurrency, self.allowed_in_flight + 1)
            self._last_change = now
            self.bucket.set_rate(self.current_rate)
            self._slot_free.notify_all()


_limiters: dict[Hashable, AccountLimiter] = {}
_limiters_lock = threading.Lock()


def account_limiter(key: Hashable, *, rate: float, max_concurrency: int) -> AccountLimiter:
    """The process-wide limiter of one account, so two clients of the same account share its budget."""
    with _limiters_lock:
        limiter = _limiters.get(key)
        if limiter is None or limiter.rate != float(rate) or limiter.max_concurrency != max_concurrency:
            # Settings changed: calls already in flight finish under the old limiter.
            limiter = _limiters[key] = AccountLimiter(rate, max_concurrency)
        return limiter


@dataclass(frozen=True)
class RetryPolicy:
    """Retries on timeouts, 5xx and broken answers (max_attempts in all), and on throttling (max_throttled
    waits more, on top: throttling says nothing about the call, only about the account's budget).
    Exponential backoff with jitter, capped; a Retry-After the carrier sends is honoured."""

    max_attempts: int = 5
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    max_throttled: int = 30

    def __post_init__(self):
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts!r}")
        if self.max_throttled < 0:
            raise ValueError(f"max_throttled must be 0 or more, got {self.max_throttled!r}")
        if self.backoff_base < 0 or self.backoff_cap < 0:
            raise ValueError("backoff_base and backoff_cap must be >= 0")

    def delay(self, attempt: int, *, retry_after: float | None = None, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (0-based).

        "Equal jitter": half the exponential step is kept, half is random, so
        clients that failed together spread out without any retrying at once.
        """
        step = min(self.backoff_cap, self.backoff_base * (2 ** attempt))
        wait = step / 2 + (rng or random).uniform(0, step / 2)
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.backoff_cap))
        return wait


class CircuitBreaker:
    """Opens when, within the last `window` seconds, at least `threshold` calls failed for good (after their own
    retries) and they are at least `min_failure_share` of the calls that ended there.

    Only final outcomes count, once per call, whichever thread made it: retried attempts,
    throttling and per-SIM refusals do not. So a carrier that fails a fifth of the calls
    now and then (each retried into success, or a push that re-reads and resends) never
    trips it, and an outage trips it after `threshold` calls. While open, no call is
    made; after `reset_after` seconds one trial call is let through (half-open); its
    success closes the circuit, its failure opens it again.
    """

    def __init__(self, *, threshold: int = 5, window: float = 60.0, reset_after: float = 60.0,
                 min_failure_share: float = 0.5, clock: Callable[[], float] = time.monotonic):
        if threshold < 1:
            raise ValueError(f"threshold must be at least 1, got {threshold!r}")
        if window <= 0:
            raise ValueError(f"window must be > 0 seconds, got {window!r}")
        if not 0 < min_failure_share <= 1:
            raise ValueError(f"min_failure_share must be within (0, 1], got {min_failure_share!r}")
        self.threshold = threshold
        self.window = window
        self.reset_after = reset_after
        self.min_failure_share = min_failure_share
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: deque[float] = deque()
        self._successes: deque[tuple[int, int]] = deque()  # (whole second, successes in it)
        self.opened_at: float | None = None
        self.last_failure = ""
        self._trial_in_flight = False

    @property
    def is_open(self) -> bool:
        return self.opened_at is not None

    @property
    def recent_failures(self) -> int:
        with self._lock:
            self._expire(self._clock())
            return len(self._failures)

    def _expire(self, now: float) -> None:
        while self._failures and now - self._failures[0] > self.window:
            self._failures.popleft()
        while self._successes and now - self._successes[0][0] > self.window:
            self._successes.popleft()

    def before_call(self, *, label: str) -> None:
        with self._lock:
            if self.opened_at is None:
                return
            if self._clock() - self.opened_at >= self.reset_after and not self._trial_in_flight:
                self._trial_in_flight = True
                return
            raise CircuitOpenError(self._open_message(label))

    def record_success(self) -> None:
        with self._lock:
            now = self._clock()
            if self._trial_in_flight or self.opened_at is not None:
                self._failures.clear()
                self._successes.clear()
            self.opened_at = None
            self._trial_in_flight = False
            second = int(now)
            if self._successes and self._successes[-1][0] == second:
                self._successes[-1] = (second, self._successes[-1][1] + 1)
            else:
                self._successes.append((second, 1))

    def record_failure(self, reason: str, *, label: str) -> None:
        """Count one call that failed for good; raises CircuitOpenError when this one opens (or re-opens) the circuit."""
        with self._lock:
            now = self._clock()
            self._expire(now)
            self._failures.append(now)
            self.last_failure = reason
            trial_failed = self._trial_in_flight
            self._trial_in_flight = False
            failed = len(self._failures)
            ended = failed + sum(n for _, n in self._successes)
            if trial_failed or (failed >= self.threshold and failed >= self.min_failure_share * ended):
                self.opened_at = now
                raise CircuitOpenError(self._open_message(label))

    def _open_message(self, label: str) -> str:
        return (f"{label}: circuit open after {len(self._failures)} calls failed for good within "
                f"{self.window:g}s (last: {self.last_failure}); no further calls for {self.reset_after:g}s")
