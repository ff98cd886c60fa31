"""Politeness towards carriers: token bucket, retry backoff with jitter and cap, circuit breaker (no network)."""
import random

import pytest

from carriers import (
    CircuitBreaker,
    CircuitOpenError,
    RetryPolicy,
    TokenBucket,
)
from carriers.limits import AccountLimiter


class FakeClock:
    def __init__(self):
        self.now = 100.0
        self.slept = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds



def test_token_bucket_spaces_calls_at_the_rate():
    clock = FakeClock()
    bucket = TokenBucket(5, clock=clock, sleep=clock.sleep)
    stamps = []
    for _ in range(6):
        bucket.acquire()
        stamps.append(clock.now)
    assert stamps == pytest.approx([100.0, 100.2, 100.4, 100.6, 100.8, 101.0])



def test_token_bucket_burst_then_rate():
    clock = FakeClock()
    bucket = TokenBucket(2, burst=3, clock=clock, sleep=clock.sleep)
    waits = [bucket.acquire() for _ in range(5)]
    assert waits == pytest.approx([0, 0, 0, 0.5, 0.5])



def test_token_bucket_refuses_nonsense():
    with pytest.raises(ValueError, match="rate must be > 0"):
        TokenBucket(0)



def test_retry_delay_grows_exponentially_with_jitter_and_cap():
    policy = RetryPolicy(max_attempts=6, backoff_base=1, backoff_cap=8)
    rng = random.Random(1)
    delays = [policy.delay(n, rng=rng) for n in range(5)]
    for n, d in enumerate(delays):
        step = min(8, 2 ** n)
        assert step / 2 <= d <= step
    assert len(set(delays)) == 5  # jittered
    assert policy.delay(0, retry_after=5, rng=rng) >= 5
    assert policy.delay(0, retry_after=60, rng=rng) == 8  # Retry-After never exceeds the cap



def test_circuit_breaker_counts_final_failures_within_its_window_and_half_opens_later():
    clock = FakeClock()
    breaker = CircuitBreaker(threshold=5, window=60, reset_after=30, clock=clock)
    for _ in range(4):
        breaker.record_failure("boom", label="acct")
    breaker.record_success()  # successes in between do not forgive failures within the window...
    clock.now += 61
    assert breaker.recent_failures == 0  # ...but the window does
    for _ in range(4):
        breaker.record_failure("boom", label="acct")
        breaker.record_success()
    with pytest.raises(CircuitOpenError, match="circuit open after 5 calls failed for good within 60s"):
        breaker.record_failure("boom 5", label="acct")
    with pytest.raises(CircuitOpenError, match=r"last: boom 5"):
        breaker.before_call(label="acct")
    clock.now += 30
    breaker.before_call(label="acct")  # one trial call
    with pytest.raises(CircuitOpenError):
        breaker.before_call(label="acct")  # and only one
    breaker.record_success()
    breaker.before_call(label="acct")
    assert not breaker.is_open and breaker.recent_failures == 0


def test_account_limiter_halves_on_throttling_and_recovers_slowly():
    clock = FakeClock()
    limiter = AccountLimiter(10, 1, clock=clock, sleep=lambda s: None)
    assert limiter.throttled() == 5 and limiter.throttled() == 2.5
    assert limiter.bucket.rate == 2.5
    for _ in range(50):
        limiter.throttled()
    assert limiter.current_rate == limiter.floor == 0.5  # never below 5 % of the configured rate
    limiter.succeeded()
    assert limiter.current_rate == 0.5  # less than a second later: no change
    clock.now += 1
    limiter.succeeded()
    assert limiter.current_rate == 1.0  # +5 % of 10 per clean second
    clock.now += 100
    limiter.succeeded()
    assert limiter.current_rate == 10 and limiter.bucket.rate == 10  # never above the configured rate


def test_retry_after_holds_every_caller_of_the_account():
    clock = FakeClock()
    slept = []
    limiter = AccountLimiter(100, 1, clock=clock, sleep=slept.append)
    limiter.throttled(retry_after=2.0)
    limiter.bucket.acquire()
    assert slept and slept[0] == pytest.approx(2.0)
