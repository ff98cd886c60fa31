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

from rateplans.alerts import alert_raise
from rateplans.models import AlertKind
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
    dead_lettered: int = 0


def body_of(event: ProgressEvent) -> bytes:
    return json.dumps(event.payload, separators=(",", ":"), sort_keys=True).encode()


def headers_for(event: ProgressEvent, body: bytes, *, secret: str, api_key: str) -> dict:
    """The HMAC signature when a secret is set, the bearer key when AMOP_API_KEY is set (both when both are)."""
    headers = {"Content-Type": "application/json", EVENT_HEADER: str(event.event_id)}
    if secret:
        headers[SIGNATURE_HEADER] = sign(body, secret)
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


def events_deliver(*, url: str | None = None, secret: str | None = None, api_key: str | None = None,
                   now: dt.datetime | None = None, limit: int = 500,
                   transport: httpx.BaseTransport | None = None) -> DeliveryReport:
    url = url if url is not None else settings.AMOP_WEBHOOK_URL
    secret = secret if secret is not None else settings.AMOP_WEBHOOK_SECRET
    api_key = api_key if api_key is not None else settings.AMOP_API_KEY
    report = DeliveryReport()
    if not url:
        return report
    # One sending pass may take minutes (up to `limit` POSTs): every due check and lease
    # reads the clock afresh, or a lease taken late in the pass would already have lapsed.
    clock = (lambda: now) if now is not None else timezone.now
    lease = max(SENDING_LEASE, dt.timedelta(seconds=3 * settings.AMOP_WEBHOOK_TIMEOUT))
    blocked: set[tuple] = set()
    with httpx.Client(timeout=settings.AMOP_WEBHOOK_TIMEOUT, transport=transport) as client:
        for event in ProgressEvent.objects.filter(delivered_at__isnull=True, dead_lettered_at__isnull=True).order_by("id")[:limit]:
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
            headers = headers_for(event, body, secret=secret, api_key=api_key)
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
            elif event.attempts + 1 >= settings.AMOP_WEBHOOK_MAX_ATTEMPTS:
                # Given up: set aside (not blocking), so the stream's later events flow; alerted once.
                if ours.update(dead_lettered_at=timezone.now(), next_attempt_at=None, last_error=error[:1000]):
                    report.dead_lettered += 1
                    log.error("AMOP webhook event %s dead-lettered after %s attempts (%s)", event.event_id,
                              event.attempts + 1, error)
                    _dead_letter_alert(event, attempts=event.attempts + 1, error=error, url=url)
            else:
                retry_at = clock() + dt.timedelta(seconds=backoff_seconds(event.attempts + 1))
                ours.update(next_attempt_at=retry_at, last_error=error[:1000])
                log.warning("AMOP webhook for event %s failed (%s); retry at %s", event.event_id, error, retry_at)
                blocked.add(stream)
                report.failed += 1
    return report


def _dead_letter_alert(event: ProgressEvent, *, attempts: int, error: str, url: str) -> None:
    provider = event.provider
    data = event.payload.get("data", {})
    what = (f"session {data.get('OptimizationSessionGuid')} event {event.sequence} ({event.kind}"
            + (f", {event.progress} %" if event.progress is not None else "") + ")") if event.session_id else \
        f"daily sync notice {event.sequence}"
    # Keyed by account: a receiver that is down dead-letters many events, one e-mail says it (the count grows).
    alert_raise(provider=provider, kind=AlertKind.WEBHOOK_DEAD, key="amop",
                subject=f"AMOP webhook gave up on an event of {provider.name}",
                body=f"The AMOP webhook ({url}) refused {what} {attempts} times; the last answer was {error}.\n"
                     f"Event id: {event.event_id}\n\nIt was set aside so the later events flow. Once the receiver "
                     f"is fixed, re-send it from the admin (Progress events, filter 'dead-lettered', action "
                     f"'Re-send').\n")


def events_resend(*, event_ids) -> int:
    """Put dead-lettered events back in the outbox: they are sent again from their first attempt."""
    return ProgressEvent.objects.filter(pk__in=list(event_ids), delivered_at__isnull=True,
                                        dead_lettered_at__isnull=False).update(
        dead_lettered_at=None, attempts=0, next_attempt_at=None, last_error="")
