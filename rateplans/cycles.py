"""Billing cycle arithmetic: which cycle contains a date for a given cycle end day."""
from __future__ import annotations

import datetime as dt


def cycle_bounds(today: dt.date, end_day: int) -> tuple[dt.date, dt.date]:
    """The billing cycle containing `today` for a cycle ending on `end_day` of each month."""

    def end_in(year: int, month: int) -> dt.date:
        first_next = dt.date(year + (month == 12), month % 12 + 1, 1)
        last = (first_next - dt.timedelta(days=1)).day
        return dt.date(year, month, min(end_day, last))

    end = end_in(today.year, today.month)
    if today > end:
        end = end_in(today.year + (today.month == 12), today.month % 12 + 1)
    prev_month_year = end.year - (end.month == 1)
    prev_month = (end.month - 2) % 12 + 1
    start = end_in(prev_month_year, prev_month) + dt.timedelta(days=1)
    return start, end
