"""The push's two carrier clients (a reader that retries, a writer that never repeats a PUT) and its calls."""
from __future__ import annotations

import time

from carriers import (
    CarrierClient,
    CarrierError,
    CarrierProtocolError,
    CarrierThrottled,
    CarrierUnavailable,
    CircuitBreaker,
    CircuitOpenError,
    RetryPolicy,
)
from devices.clients import client_for
from pushes.tuning import PushTuning
from rateplans.models import ServiceProvider


def account_wide(exc: BaseException) -> bool:
    """An error no later change could escape (open circuit, refused credentials, a broken account URL): stop the push."""
    if isinstance(exc, (CircuitOpenError, CarrierThrottled)):
        # Throttled through every backoff: the account's budget is spent for every later change too.
        return True
    return (isinstance(exc, CarrierError) and not exc.per_device
            and not isinstance(exc, (CarrierUnavailable, CarrierProtocolError)))


def carrier_clients(provider: ServiceProvider, tuning: PushTuning) -> tuple[CarrierClient, CarrierClient]:
    """A reader that retries freely and a writer that never repeats a PUT on its own (the push decides, after a read).

    Both share the account's rate limiter (client_for keys it by account) and one
    circuit breaker; it counts calls that failed for good (the writer never retries, so
    each failed PUT is one) and only opens when they are at least half of the calls that
    ended in its window, with a threshold above the calls in flight, since one carrier
    hiccup can fail all of them at once.
    """
    breaker = CircuitBreaker(threshold=max(5, provider.max_concurrency + 1))
    common = {"timeout": tuning.timeout, "connect_timeout": tuning.timeout, "breaker": breaker}
    reader = client_for(provider, retry=RetryPolicy(max_attempts=tuning.read_attempts, backoff_base=tuning.backoff_base,
                                                    backoff_cap=tuning.backoff_cap), **common)
    writer = client_for(provider, retry=RetryPolicy(max_attempts=1), **common)
    return reader, writer


def read_plan(client: CarrierClient, iccid: str, delay: float = 0.0) -> str | None:
    if delay > 0:
        time.sleep(delay)
    return client.get_device(iccid).rate_plan


def send_plan(client: CarrierClient, iccid: str, plan: str) -> tuple[Exception | None, float]:
    """PUT once: (None, seconds) when the carrier accepted, else (the error, seconds until it came)."""
    started = time.monotonic()
    try:
        client.change_rate_plan(iccid, plan)
    except Exception as exc:  # noqa: BLE001 — handed to the calling thread, which decides
        return exc, time.monotonic() - started
    return None, time.monotonic() - started
