"""Politeness towards carriers: token bucket, retry backoff with jitter and cap, circuit breaker (no network)."""
import random

import pytest

from carriers import (
    CircuitBreaker,
    CircuitOpenError,
    RetryPolicy,
    TokenBucket,
)


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



def test_circuit_breaker_opens_after_threshold_and_half_opens_later():
    clock = FakeClock()
    breaker = CircuitBreaker(threshold=5, reset_after=30, clock=clock)
    for _ in range(4):
        breaker.record_failure("boom", label="acct")
    breaker.record_success()  # a success resets the count
    for _ in range(4):
        breaker.record_failure("boom", label="acct")
    with pytest.raises(CircuitOpenError, match="circuit open after 5 consecutive failures"):
        breaker.record_failure("boom 5", label="acct")
    with pytest.raises(CircuitOpenError, match=r"last: boom 5"):
        breaker.before_call(label="acct")
    clock.now += 30
    breaker.before_call(label="acct")  # one trial call
    with pytest.raises(CircuitOpenError):
        breaker.before_call(label="acct")  # and only one
    breaker.record_success()
    breaker.before_call(label="acct")
    assert not breaker.is_open

