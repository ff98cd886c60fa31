"""Test helpers: a carrier account pointing at a running simulator, and its client with test-sized timeouts."""
from __future__ import annotations

from carriers import CircuitBreaker, RetryPolicy
from carriers.simulator import SimulatorServer
from devices.clients import client_for
from devices.demo import demo_catalogue_upsert
from rateplans.models import ServiceProvider


def simulated_provider(*, server: SimulatorServer, tenant, catalogue: bool = True, **fields):
    """A Jasper account pointing at `server` with its credentials and, by default, the demo catalogue."""
    values = {
        "name": f"Simulated carrier :{server.port}", "integration": "Jasper", "api_base_url": server.url,
        "username": server.carrier.username, "api_key": server.carrier._credentials.decode().partition(":")[2],
        "billing_timezone": "America/Chicago", "billing_cycle_end_day": 31, "rate_limit_per_second": 1000,
        "max_concurrency": 4, "report_recipients": "fleet-ops@example.com",
    }
    values.update(fields)
    values = {k: v for k, v in values.items() if v is not None}  # None: the model's default
    provider = ServiceProvider.objects.create(tenant=tenant, **values)
    if catalogue:
        demo_catalogue_upsert(provider=provider)
    return provider


def fast_client(provider, *, timeout: float = 0.25, attempts: int = 5, threshold: int = 5,
                backoff_base: float = 0.002, backoff_cap: float = 0.01):
    """client_for(provider) with test-sized timeouts and backoff (milliseconds, not seconds)."""
    return client_for(provider, timeout=timeout, connect_timeout=timeout,
                      retry=RetryPolicy(max_attempts=attempts, backoff_base=backoff_base, backoff_cap=backoff_cap),
                      breaker=CircuitBreaker(threshold=threshold))


def billed(provider) -> set[str]:
    """ICCIDs of the account's SIMs the carrier bills this cycle (those a usage sync must ask about)."""
    from devices.models import Device, billed_in_cycle
    from rateplans.services import billing_period_current

    period = billing_period_current(provider=provider)
    return set(Device.objects.filter(billed_in_cycle(cycle_start=period.starts_at()), provider=provider,
                                     missing_since__isnull=True).values_list("iccid", flat=True))
