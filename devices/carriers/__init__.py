"""Carrier API clients: the adapter interface, the Jasper-family client and `client_for(provider)`."""
from __future__ import annotations

from typing import TYPE_CHECKING

from devices.carriers.base import (
    MAX_PAGE_SIZE,
    CarrierClient,
    ClientStats,
    CtdUsage,
    DeviceDetails,
    DevicePage,
    DeviceRecord,
)
from devices.carriers.errors import (
    CarrierAuthError,
    CarrierBadValue,
    CarrierConfigError,
    CarrierError,
    CarrierNotFound,
    CarrierProtocolError,
    CarrierRequestRejected,
    CarrierUnavailable,
    CircuitOpenError,
    IntegrationNotSupported,
    PageLimitExceeded,
)
from devices.carriers.jasper import JasperClient
from devices.carriers.limits import CircuitBreaker, RetryPolicy, TokenBucket

if TYPE_CHECKING:
    from rateplans.models import ServiceProvider


def client_for(provider: ServiceProvider, *, timeout: float = 30.0, connect_timeout: float = 10.0,
               retry: RetryPolicy | None = None, breaker: CircuitBreaker | None = None) -> CarrierClient:
    """The client for a carrier account, chosen by its integration, with the account's limits.

    Tests pass short timeouts and a fast retry policy here rather than sleeping.
    """
    from rateplans.models import JASPER_FAMILY

    label = f"carrier account #{provider.pk} {provider.name!r}"
    if provider.integration in JASPER_FAMILY:
        return JasperClient(
            base_url=provider.api_base_url, username=provider.username, api_key=provider.api_key, label=label,
            rate_limit=float(provider.rate_limit_per_second), max_concurrency=provider.max_concurrency,
            max_pages=provider.max_pages, timeout=timeout, connect_timeout=connect_timeout, retry=retry,
            breaker=breaker, limiter_key=("account", provider.pk, provider.api_base_url, provider.username),
        )
    raise IntegrationNotSupported(
        f"{label}: integration {provider.integration!r} is not supported yet; carrieropt syncs only the "
        f"Jasper family (Jasper, POD19, TMobileJasper, Rogers)", field="integration")


__all__ = [
    "MAX_PAGE_SIZE", "CarrierAuthError", "CarrierBadValue", "CarrierClient", "CarrierConfigError", "CarrierError", "CarrierNotFound",
    "CarrierProtocolError", "CarrierRequestRejected", "CarrierUnavailable", "CircuitBreaker", "CircuitOpenError",
    "ClientStats", "CtdUsage", "DeviceDetails", "DevicePage", "DeviceRecord", "IntegrationNotSupported",
    "JasperClient", "PageLimitExceeded", "RetryPolicy", "TokenBucket", "client_for",
]
