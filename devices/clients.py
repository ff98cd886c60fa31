"""The carrier client of an account: `client_for(provider)` turns a ServiceProvider into plain client configuration."""
from __future__ import annotations

from functools import partial

from carriers import CarrierClient, CircuitBreaker, ClientStats, IntegrationNotSupported, JasperClient, RetryPolicy
from devices.calls import carrier_calls_record
from rateplans.models import JASPER_FAMILY, ServiceProvider


def client_for(provider: ServiceProvider, *, timeout: float = 30.0, connect_timeout: float = 10.0,
               retry: RetryPolicy | None = None, breaker: CircuitBreaker | None = None) -> CarrierClient:
    """The client for a carrier account, chosen by its integration, with the account's limits.

    Tests pass short timeouts and a fast retry policy here rather than sleeping.
    """
    label = f"carrier account #{provider.pk} {provider.name!r}"
    if provider.integration in JASPER_FAMILY:
        client = JasperClient(
            base_url=provider.api_base_url, username=provider.username, api_key=provider.api_key, label=label,
            rate_limit=float(provider.rate_limit_per_second), max_concurrency=provider.max_concurrency,
            max_pages=provider.max_pages, timeout=timeout, connect_timeout=connect_timeout, retry=retry,
            breaker=breaker, limiter_key=("account", provider.pk, provider.api_base_url, provider.username),
        )
        client.on_close = partial(_record_calls, provider.pk)
        return client
    raise IntegrationNotSupported(
        f"{label}: integration {provider.integration!r} is not supported yet; carrieropt syncs only the "
        f"Jasper family (Jasper, POD19, TMobileJasper, Rogers)", field="integration")


def _record_calls(provider_id: int, stats: ClientStats) -> None:
    carrier_calls_record(provider_id=provider_id, stats=stats)
