"""Writes to the catalogue: the billing period an account is in."""
from __future__ import annotations

import datetime as dt

from django.utils import timezone

from rateplans.cycles import cycle_bounds
from rateplans.models import BillingPeriod, ServiceProvider


def billing_period_current(*, provider: ServiceProvider, at: dt.datetime | None = None) -> BillingPeriod:
    """The period containing `at` in the account's billing time zone, created on first use."""
    at = at or timezone.now()
    local_day = at.astimezone(provider.tz).date()
    start, end = cycle_bounds(local_day, provider.billing_cycle_end_day)
    period, _ = BillingPeriod.objects.get_or_create(provider=provider, end_date=end, defaults={"start_date": start})
    return period
