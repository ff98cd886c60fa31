"""Alerts: one e-mail per incident of a carrier account, to its recipients and OPS_EMAILS."""
from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from rateplans.models import Alert, ServiceProvider

log = logging.getLogger(__name__)


def alert_raise(*, provider: ServiceProvider, kind: str, key: str, subject: str, body: str,
                now: dt.datetime | None = None) -> Alert:
    """Record an incident and mail it, unless the same key was raised within ALERT_DEDUP_MINUTES.

    A repeat extends the window (the incident is still going on) and is counted on the
    alert instead of mailed. The account row is locked first (PostgreSQL) and the repeat's
    UPDATE is the first write (SQLite's write lock), so concurrent raisers of one key make
    one alert and one e-mail.
    """
    now = now or timezone.now()
    key = f"{provider.pk}:{kind}:{key}"[:200]
    window = dt.timedelta(minutes=settings.ALERT_DEDUP_MINUTES)
    with transaction.atomic():
        ServiceProvider.objects.select_for_update().filter(pk=provider.pk).values_list("pk").get()
        repeat = Alert.objects.filter(key=key, last_at__gte=now - window)
        if repeat.update(occurrences=F("occurrences") + 1, last_at=now):
            return repeat.order_by("-last_at").first()
        recipients = provider.alert_recipients
        alert = Alert.objects.create(provider=provider, kind=kind, key=key, subject=subject[:300], body=body,
                                     recipients=", ".join(recipients), first_at=now, last_at=now)
    # Sent once the alert row is written (not on_commit: an incident raised inside a transaction that then
    # rolls back, like a failing sync, must still be told).
    _send(alert.pk)
    return alert


def _send(alert_id: int) -> None:
    alert = Alert.objects.select_related("provider").get(pk=alert_id)
    recipients = [r.strip() for r in alert.recipients.split(",") if r.strip()]
    if not recipients:
        log.warning("alert %s (%s) for %s: no recipients configured (report_recipients, OPS_EMAILS); not mailed",
                    alert.pk, alert.kind, alert.provider.name)
        Alert.objects.filter(pk=alert_id).update(send_error="No recipients: set the account's report_recipients or OPS_EMAILS.")
        return
    try:
        send_mail(alert.subject, alert.body, None, recipients)
    except Exception as exc:  # noqa: BLE001 — the incident is recorded; a mail server problem must not hide it
        log.exception("alert %s could not be mailed", alert.pk)
        Alert.objects.filter(pk=alert_id).update(send_error=f"{type(exc).__name__}: {exc}"[:1000])
        return
    Alert.objects.filter(pk=alert_id).update(sent_at=timezone.now(), send_error="")
