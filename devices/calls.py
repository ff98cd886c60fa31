"""Counts of carrier API calls kept in the database, so every worker's calls add up in one place."""
from __future__ import annotations

import logging

from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from carriers import ClientStats
from devices.models import CarrierCallCount

log = logging.getLogger(__name__)


def carrier_calls_record(*, provider_id: int, stats: ClientStats) -> None:
    """Add the calls a client made since it last reported to the account's counts.

    Counting must never fail the sync or push that made the calls, so a database error is
    logged (the counts are then lost) rather than raised."""
    taken = stats.take_calls()
    if not taken:
        return
    try:
        with transaction.atomic():
            for (endpoint, outcome), calls in sorted(taken.items()):
                _add(provider_id=provider_id, endpoint=endpoint, outcome=outcome, calls=calls)
    except DatabaseError as exc:
        log.warning("carrier account #%s: %d call counts not stored: %s", provider_id, sum(taken.values()), exc)


def _add(*, provider_id: int, endpoint: str, outcome: str, calls: int) -> None:
    rows = CarrierCallCount.objects.filter(provider_id=provider_id, endpoint=endpoint, outcome=outcome)
    if rows.update(calls=F("calls") + calls, updated_at=timezone.now()):
        return
    try:
        with transaction.atomic():
            CarrierCallCount.objects.create(provider_id=provider_id, endpoint=endpoint, outcome=outcome, calls=calls)
    except IntegrityError:  # another worker created the row first
        rows.update(calls=F("calls") + calls, updated_at=timezone.now())
