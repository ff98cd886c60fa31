"""Alerts for carrier failures that need a person: refused credentials, an opened circuit breaker."""
from __future__ import annotations

from carriers.errors import CarrierAuthError, CarrierError, CircuitOpenError
from rateplans.alerts import alert_raise
from rateplans.models import AlertKind, ServiceProvider


def carrier_error_alert(*, provider: ServiceProvider, exc: BaseException, doing: str) -> None:
    """Alert once per account and window when the carrier refused the credentials or the breaker opened; other
    carrier errors are the caller's to report."""
    if not isinstance(exc, CarrierError):
        return
    account = f"Carrier account: {provider.name} ({provider.integration}), user {provider.username!r}, {provider.api_base_url}"
    if isinstance(exc, CarrierAuthError):
        alert_raise(provider=provider, kind=AlertKind.CARRIER_AUTH, key="account",
                    subject=f"Carrier refused the credentials of {provider.name}",
                    body=f"{account}\n\nWhile {doing} the carrier refused the account's username / API key or its "
                         f"permissions:\n{exc.message}\n\nNothing was changed. Check the API key and the API user's "
                         f"permissions on the carrier's portal, then enter the key again in the admin.\n")
    elif isinstance(exc, CircuitOpenError):
        alert_raise(provider=provider, kind=AlertKind.BREAKER_OPEN, key="account",
                    subject=f"Carrier calls of {provider.name} stopped: circuit breaker open",
                    body=f"{account}\n\nWhile {doing} too many calls in a row failed, so carrieropt stopped calling "
                         f"this carrier account:\n{exc.message}\n\nUsually the carrier is down or throttling; "
                         f"the next sync or push tries again.\n")
