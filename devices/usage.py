"""Usage arithmetic of the legacy system: bytes to MB and the projection to a full cycle."""
from __future__ import annotations

import datetime as dt

from carriers import BYTES_PER_MB

PROJECTION_MARGIN = 1.01
NOT_PROJECTED_STATUSES = frozenset({"DEACTIVATED", "RETIRED"})


def bytes_to_mb(ctd_bytes: int) -> float:
    return round(ctd_bytes / BYTES_PER_MB, 3)


def projected_mb(usage_mb: float, *, status: str, usage_date: dt.datetime | None,
                 period_start: dt.datetime, period_end: dt.datetime, now: dt.datetime) -> float:
    """Cycle-to-date usage scaled to the whole period, +1 %, as the legacy system did.

    The usage itself is kept when scaling would be guesswork: a SIM that no
    longer uses data, no measurement date, a date outside the period, or a
    period that is already over.
    """
    if (status in NOT_PROJECTED_STATUSES or usage_date is None or not (period_start < usage_date <= period_end)
            or now >= period_end):
        return round(usage_mb, 3)
    elapsed = (usage_date - period_start).total_seconds()
    total = (period_end - period_start).total_seconds()
    return round(usage_mb * (total / elapsed) * PROJECTION_MARGIN, 3)
