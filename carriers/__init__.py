"""The carrier's API as plain Python: the client interface, the Jasper-family client, errors and limits.

Configuration in (URL, credentials, limits), plain data out; no models. `devices.clients.client_for`
builds a client from a carrier account."""
from __future__ import annotations

from carriers.base import (
    BYTES_PER_MB,
    MAX_PAGE_SIZE,
    CarrierClient,
    ClientStats,
    CtdUsage,
    CycleUsage,
    DeviceDetails,
    DevicePage,
    DeviceRecord,
    UsagePage,
)
from carriers.errors import (
    CONTROL_CENTER_ERRORS,
    THROTTLED_CODE,
    CarrierAccountError,
    CarrierAuthError,
    CarrierBadValue,
    CarrierConfigError,
    CarrierError,
    CarrierNotFound,
    CarrierProtocolError,
    CarrierRequestRejected,
    CarrierThrottled,
    CarrierUnavailable,
    CircuitOpenError,
    IntegrationNotSupported,
    PageLimitExceeded,
)
from carriers.jasper import JasperClient
from carriers.limits import CircuitBreaker, RetryPolicy, TokenBucket

__all__ = [
    "CONTROL_CENTER_ERRORS", "THROTTLED_CODE", "CarrierAccountError", "CarrierThrottled",
    "BYTES_PER_MB", "MAX_PAGE_SIZE", "CarrierAuthError", "CarrierBadValue", "CarrierClient", "CarrierConfigError", "CarrierError", "CarrierNotFound",
    "CarrierProtocolError", "CarrierRequestRejected", "CarrierUnavailable", "CircuitBreaker", "CircuitOpenError",
    "ClientStats", "CtdUsage", "CycleUsage", "UsagePage", "DeviceDetails", "DevicePage", "DeviceRecord", "IntegrationNotSupported",
    "JasperClient", "PageLimitExceeded", "RetryPolicy", "TokenBucket",
]
