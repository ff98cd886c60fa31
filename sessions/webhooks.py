"""Delivers the progress outbox to AMOP 2.0: signed, in order per stream, retried with backoff."""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import random
from dataclasses import dataclass

import httpx
from django.conf import settings
from django.db.models import F
from django.utils import timezone

from sessions.models import ProgressEvent

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Carrieropt-Signature"
EVENT_HEADER = "X-Carrieropt-Event-Id"
SENDING_LEASE = dt.timedelta(seconds=60)


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature_valid(body: bytes, header: str, secret: str) -> bool:
    """What a receiver does: recompute and compare in constant time."""
    return hmac.compare_digest(sign(body, secret), header or "")


def backoff_seconds(attempts: int) -> float:
    """Capped exponential backoff with jitter (half to full), so retries from many senders spread out."""
    delay = min(settings.AMOP_WEBHOOK_BACKOFF_CAP, settings.AMOP_WEBHOOK_BACKOFF_BASE * 2 ** max(attempts - 1, 0))
    return delay * (0.5 + random.random() / 2)


@dataclass
class DeliveryReport:
    delivered: int = 0
    failed: int = 0
    waiting: int = 0


def body_of(event: ProgressEvent) -> bytes:
    return json.dumps(event.payload, separators=(",", ":"), sort_keys=True).encode()


def events_deliver(*, url: str | None = None, secret: str | None = None, now: dt.datetime | None = None,
                   limit: int = 500, transport: httpx.BaseTransport | None = None) -> DeliveryReport:
    url = url if url is not None else settings.AMOP_WEBHOOK_URL
    secret = secret if secret is not None else settings.AMOP_WEBHOOK_SECRET
    report = DeliveryReport()
    if not url:
        return report
    # One sending pass may take minutes (up to `limit` POSTs): every due check and lease
    # reads the clock afresh, or a lease taken late in the pass would already have lapsed.
    clock = (lambda: now) if now is not None else timezone.now
    lease = max(SENDING_LEASE, dt.timedelta(seconds=3 * settings.AMOP_WEBHOOK_TIMEOUT))
    blocked: set[tuple] = set()
    with httpx.Client(timeout=settings.AMOP_WEBHOOK_TIMEOUT, transport=transport) as client:
        for event in ProgressEvent.objects.filter(delivered_at__isnull=True).order_by("id")[:limit]:
            stream = (event.session_id, None if event.session_id else event.provider_id)
            if stream in blocked:
                continue  # an earlier event of this stream is not delivered yet: keep order
            if event.next_attempt_at and event.next_attempt_at > clock():
                blocked.add(stream)
                report.waiting += 1
                continue
            # Claim for a while so a concurrent sender skips it; a crash just lets the lease lapse.
            claimed = ProgressEvent.objects.filter(pk=event.pk, delivered_at__isnull=True, attempts=event.attempts).update(
                attempts=F("attempts") + 1, next_attempt_at=clock() + lease)
            if not claimed:
                blocked.add(stream)
                continue
            body = body_of(event)
            headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, secret),
                       EVENT_HEADER: str(event.event_id)}
            try:
                response = client.post(url, content=body, headers=headers)
                ok, error = 200 <= response.status_code < 300, f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                ok, error = False, f"{type(exc).__name__}: {exc}"
            # Written only while the claim is still ours (nobody re-claimed after a lapsed lease).
            ours = ProgressEvent.objects.filter(pk=event.pk, attempts=event.attempts + 1, delivered_at__isnull=True)
            if ok:
                ours.update(delivered_at=timezone.now(), last_error="")
                report.delivered += 1
            else:
                retry_at = clock() + dt.timedelta(seconds=backoff_seconds(event.attempts + 1))
                ours.update(next_attempt_at=retry_at, last_error=error[:1000])
                log.warning("AMOP webhook for event %s failed (%s); retry at %s", event.event_id, error, retry_at)
                blocked.add(stream)
                report.failed += 1
    return report
