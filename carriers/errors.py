"""Carrier call failures: each names the account, the call and what the carrier said, never the API key."""
from __future__ import annotations

from carrieropt.errors import ExternalServiceError, ValidationFailed


class CarrierError(ExternalServiceError):
    """A call to a carrier's API did not give a usable answer."""

    code = "carrier_error"
    # Whether the sync may skip the one SIM this call was about and go on.
    per_device = False


class CarrierAuthError(CarrierError):
    """The carrier refused the account's username / API key (HTTP 401 or 403)."""

    code = "carrier_auth"


class CarrierConfigError(CarrierError):
    """The account's own settings make the call impossible (e.g. an api_base_url that is not a URL)."""

    code = "carrier_config"


class CarrierNotFound(CarrierError):
    """The carrier does not know the ICCID asked about (HTTP 404)."""

    code = "carrier_not_found"
    per_device = True


class CarrierRequestRejected(CarrierError):
    """The carrier refused the request itself (HTTP 400 or another 4xx), e.g. a rate plan it does not allow."""

    code = "carrier_rejected"
    per_device = True


class CarrierProtocolError(CarrierError):
    """The carrier answered, but not in the shape its API defines (not JSON, fields missing)."""

    code = "carrier_protocol"


class CarrierBadValue(CarrierProtocolError):
    """One SIM's answer carries a value the API does not allow (e.g. a negative byte count)."""

    per_device = True


class CarrierUnavailable(CarrierError):
    """Timeouts, 429s or 5xx answers persisted through every retry."""

    code = "carrier_unavailable"


class CircuitOpenError(CarrierUnavailable):
    """Too many consecutive failures: the client stopped calling this carrier account."""

    code = "carrier_circuit_open"


class PageLimitExceeded(CarrierError):
    """The carrier never said lastPage within the account's max_pages."""

    code = "carrier_page_limit"


class IntegrationNotSupported(ValidationFailed):
    """The account's integration has no client in carrieropt yet."""

    code = "integration_not_supported"
