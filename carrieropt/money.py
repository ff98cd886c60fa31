"""Money at the edge: Decimal in models and the API, float64 in the engine."""
from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")
MONEY_PLACES = Decimal("0.0001")
# Every stored amount: `models.DecimalField(**MONEY)`; four places as to_money keeps them.
MONEY = {"max_digits": 16, "decimal_places": 4}


def to_money(value) -> Decimal:
    """Engine float -> stored Decimal, keeping 4 places so sums stay exact to the cent."""
    return Decimal(repr(float(value))).quantize(MONEY_PLACES, rounding=ROUND_HALF_UP)


def cents(value) -> Decimal:
    """Round for display only."""
    return Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP)


def money_shares(values, total) -> list[str | None]:
    """Each share rounded to 4 places so that the rounded shares add up to exactly `to_money(total)`.

    Rounding a million per-SIM shares one by one drifts from the rounded total (a report whose rows
    do not add up to its own total); this rounds them down and gives the units left over to the shares
    with the largest remainders (ties: first share first). NaN shares (no known cost) stay None and take
    no part. Returns decimal strings, ready for a bulk insert.
    """
    import numpy as np  # the engine's arrays; imported here so the money helpers stay light

    v = np.asarray(values, dtype=np.float64)
    known = ~np.isnan(v)
    scaled = v[known] * 10_000
    units = np.floor(scaled)
    target = int(to_money(total) * 10_000)
    left = target - int(units.sum())
    # The shares come from the same pricing as the total, so 0 <= left <= len(units); float noise at
    # the boundary is clamped rather than failing a run over a ten-thousandth.
    left = min(max(left, 0), len(units))
    if left:
        order = np.argsort(-(scaled - units), kind="stable")
        units[order[:left]] += 1
    out: list[str | None] = [None] * len(v)
    for i, u in zip(np.flatnonzero(known).tolist(), units.astype(np.int64).tolist(), strict=True):
        sign = "-" if u < 0 else ""
        whole, frac = divmod(abs(u), 10_000)
        out[i] = f"{sign}{whole}.{frac:04d}"
    return out
