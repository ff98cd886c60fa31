"""Carrier call failures: each names the account, the call and what the carrier said, never the API key."""
from __future__ import annotations

from carrieropt.errors import ExternalServiceError, ValidationFailed


class CarrierError(ExternalServiceError):
    """A call to a carrier's API did not give a usable answer."""

    code = "carrier_error"
    # Whether the sync may skip the one SIM this call was about and go on.
    per_device = False


# Control Center's error codes, from Cisco's published pages (developer.cisco.com/docs/control-center/:
# rest-api-troubleshooting-checklist, search-devices, get-device-details, edit-device-details, get-usage-by-rate-plan).
# Every error answer is {"errorMessage": ..., "errorCode": "<8 digits as a string>"}. The scope says who is to blame:
#   throttle - the account's call budget is spent: back off and retry, never blame the SIM;
#   sim      - this one SIM (or the value asked for it): skip it / reject that change, go on;
#   request  - the request or the account itself: no other SIM can fare better, stop the run at once;
#   server   - the carrier's own failure: retry like a 5xx.
# Meanings marked (unconfirmed) are not spelled out on a page the docs corpus holds; see carriers/README.md.
THROTTLED_CODE = "40000029"
CONTROL_CENTER_ERRORS: dict[str, tuple[str, str]] = {
    "10000001": ("request", "invalid credentials (username or API key)"),
    "10000003": ("request", "a required parameter is missing (e.g. modifiedSince)"),
    "10000013": ("sim", "a value given for this SIM is not valid (unconfirmed)"),
    "10000014": ("sim", "the change is not allowed for this SIM (unconfirmed)"),
    "10000023": ("request", "the request body is not valid JSON"),
    "10000024": ("request", "invalid API version"),
    "10000028": ("request", "the request has parameters the function does not know"),
    "10000030": ("request", "the API user's role has no access to this function"),
    "20000001": ("sim", "invalid ICCID (the account has no such SIM)"),
    "30000001": ("server", "internal error at the carrier"),
    THROTTLED_CODE: ("throttle", "Rate Limit Exceeded"),
}


def error_scope(code: str | None) -> str | None:
    entry = CONTROL_CENTER_ERRORS.get(code or "")
    return entry[0] if entry else None


def error_meaning(code: str | None) -> str:
    entry = CONTROL_CENTER_ERRORS.get(code or "")
    return entry[1] if entry else "not a code carrieropt knows"


class CarrierAccountError(CarrierError):
    """The carrier refused the request or the account itself (a request-level Control Center error code).

    No other SIM of the run could fare better, so the sync or push stops at once with this one error,
    which names the code and its meaning. `carrier_code` is the carrier's errorCode ("" when none).
    """

    code = "carrier_account"

    def __init__(self, message: str, *, carrier_code: str = "", field: str | None = None, extra: dict | None = None):
        super().__init__(message, field=field, extra=extra)
        self.carrier_code = carrier_code


class CarrierAuthError(CarrierAccountError):
    """The carrier refused the account's username / API key (HTTP 401 or 403, errorCode 10000001)."""

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


class CarrierThrottled(CarrierUnavailable):
    """The carrier kept answering "Rate Limit Exceeded" (errorCode 40000029, any HTTP status, or 429) through every
    backoff: the account's budget is spent (another client on the same account?). Never about one SIM."""

    code = "carrier_throttled"


class CircuitOpenError(CarrierUnavailable):
    """Too many calls failed for good (after their retries) within the breaker's window: the client stopped calling."""

    code = "carrier_circuit_open"


class PageLimitExceeded(CarrierError):
    """The carrier never said lastPage within the account's max_pages."""

    code = "carrier_page_limit"


class IntegrationNotSupported(ValidationFailed):
    """The account's integration has no client in carrieropt yet."""

    code = "integration_not_supported"
