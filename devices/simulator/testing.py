"""Test helpers around the simulator: run it in a thread, an account pointing at it, a client with test timeouts."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from devices.simulator.carrier import Faults, SimulatedCarrier
from devices.simulator.server import SimulatorServer


@contextmanager
def running_simulator(*, sims: int = 200, seed: int = 7, faults: Faults | None = None,
                      **options) -> Iterator[SimulatorServer]:
    """A simulator on 127.0.0.1 and a free port, in a background thread, stopped on exit."""
    carrier = SimulatedCarrier(sims=sims, seed=seed, faults=faults, **options)
    with SimulatorServer(carrier) as server:
        yield server


def simulated_provider(*, server: SimulatorServer, tenant, catalogue: bool = True, **fields):
    """A Jasper account pointing at `server` with its credentials and, by default, the demo catalogue."""
    from devices.demo import demo_catalogue_upsert
    from rateplans.models import ServiceProvider

    values = {
        "name": f"Simulated carrier :{server.port}", "integration": "Jasper", "api_base_url": server.url,
        "username": server.carrier.username, "api_key": server.carrier._credentials.decode().partition(":")[2],
        "billing_timezone": "America/Chicago", "billing_cycle_end_day": 31, "rate_limit_per_second": 1000,
        "max_concurrency": 4, "report_recipients": "fleet-ops@example.com",
    }
    values.update(fields)
    provider = ServiceProvider.objects.create(tenant=tenant, **values)
    if catalogue:
        demo_catalogue_upsert(provider=provider)
    return provider


def fast_client(provider, *, timeout: float = 0.25, attempts: int = 5, threshold: int = 5,
                backoff_base: float = 0.002, backoff_cap: float = 0.01):
    """client_for(provider) with test-sized timeouts and backoff (milliseconds, not seconds)."""
    from devices.carriers import CircuitBreaker, RetryPolicy, client_for

    return client_for(provider, timeout=timeout, connect_timeout=timeout,
                      retry=RetryPolicy(max_attempts=attempts, backoff_base=backoff_base, backoff_cap=backoff_cap),
                      breaker=CircuitBreaker(threshold=threshold))
