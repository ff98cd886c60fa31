"""How one push talks to the carrier (timeouts, attempts, leases), fixed from the settings when it is created."""
from __future__ import annotations

import os
import socket
import uuid
from dataclasses import asdict, dataclass, fields

from django.conf import settings

from pushes.models import RatePlanPush
from rateplans.models import ServiceProvider


@dataclass(frozen=True)
class PushTuning:
    """Timeouts, attempts and leases of one push, fixed when it is created.

    Stored on the push so that every worker of it, whatever its own settings,
    agrees on how long another worker's PUT can still be on its way.
    """

    batch_size: int = 250
    timeout: float = 30.0  # seconds per carrier call (connect, and each read)
    read_attempts: int = 5  # a read is repeated freely: it changes nothing
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    send_attempts: int = 8  # PUTs per change at most, each after a read showed the previous did not land
    lease_seconds: float = 120.0
    resend_after: float = 90.0  # computed in from_settings: how long a recorded PUT can still be on its way
    verify_delay: float = 30.0
    run_seconds: float = 480.0  # a task gives its batch back after this long, well inside django-q2's timeout
    max_batch_claims: int = 10

    @classmethod
    def from_settings(cls, *, provider: ServiceProvider) -> PushTuning:
        timeout = float(settings.PUSH_CALL_TIMEOUT)
        # The longest a PUT can be on its way after the worker recorded it: connect + read timeout, the wait
        # for the account's rate limiter, and a margin for clock skew between the workers' machines.
        resend_after = (2 * timeout + provider.max_concurrency / float(provider.rate_limit_per_second)
                        + float(settings.PUSH_RESEND_MARGIN_SECONDS))
        return cls(
            batch_size=int(settings.PUSH_BATCH_SIZE),
            timeout=timeout,
            read_attempts=int(settings.PUSH_READ_ATTEMPTS),
            backoff_base=float(settings.PUSH_BACKOFF_BASE),
            backoff_cap=float(settings.PUSH_BACKOFF_CAP),
            send_attempts=int(settings.PUSH_SEND_ATTEMPTS),
            lease_seconds=max(float(settings.PUSH_LEASE_SECONDS), 1.0),
            resend_after=resend_after,
            verify_delay=float(settings.PUSH_VERIFY_DELAY_SECONDS),
            run_seconds=float(settings.PUSH_RUN_SECONDS),
            max_batch_claims=int(settings.PUSH_MAX_BATCH_CLAIMS),
        )

    @classmethod
    def of(cls, push: RatePlanPush) -> PushTuning:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (push.tuning or {}).items() if k in known})

    def as_json(self) -> dict:
        return asdict(self)


def worker_name() -> str:
    """Who claims a batch or a verification."""
    # host:pid identifies the process (tests SIGKILL it); the suffix makes every claim distinct.
    return f"{socket.gethostname()}:{os.getpid()}/{uuid.uuid4().hex[:8]}"
