"""Politeness towards carriers: the per-account token bucket and concurrency cap, retry backoff, circuit breaker."""
from __future__ import annotations

import random
import threading
import time
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
    """The budget one carrier account grants: calls per second and calls in flight."""

    def __init__(self, rate: float, max_concurrency: int, *, burst: int = 1):
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency!r}")
        self.rate = float(rate)
        self.max_concurrency = max_concurrency
        self.bucket = TokenBucket(rate, burst=burst)
        self._slots = threading.BoundedSemaphore(max_concurrency)

    @contextmanager
    def slot(self) -> Iterator[None]:
        # Concurrency first, token second: a thread never holds a token while it queues for a slot.
        with self._slots:
            self.bucket.acquire()
            yield


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
    """Retries on timeouts, 429 and 5xx: exponential backoff with jitter, capped."""

    max_attempts: int = 5
    backoff_base: float = 0.5
    backoff_cap: float = 30.0

    def __post_init__(self):
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts!r}")
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
    """Opens after `threshold` consecutive failures; while open, no call is made.

    After `reset_after` seconds one trial call is let through (half-open); its
    success closes the circuit, its failure opens it again.
    """

    def __init__(self, *, threshold: int = 5, reset_after: float = 60.0, clock: Callable[[], float] = time.monotonic):
        if threshold < 1:
            raise ValueError(f"threshold must be at least 1, got {threshold!r}")
        self.threshold = threshold
        self.reset_after = reset_after
        self._clock = clock
        self._lock = threading.Lock()
        self.consecutive_failures = 0
        self.opened_at: float | None = None
        self.last_failure = ""
        self._trial_in_flight = False

    @property
    def is_open(self) -> bool:
        return self.opened_at is not None

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
            self.consecutive_failures = 0
            self.opened_at = None
            self._trial_in_flight = False

    def record_failure(self, reason: str, *, label: str) -> None:
        """Count a failure; raises CircuitOpenError when this one opens (or re-opens) the circuit."""
        with self._lock:
            self.consecutive_failures += 1
            self.last_failure = reason
            trial_failed = self._trial_in_flight
            self._trial_in_flight = False
            if trial_failed or self.consecutive_failures >= self.threshold:
                self.opened_at = self._clock()
                raise CircuitOpenError(self._open_message(label))

    def _open_message(self, label: str) -> str:
        return (f"{label}: circuit open after {self.consecutive_failures} consecutive failures "
                f"(last: {self.last_failure}); no further calls for {self.reset_after:g}s")
