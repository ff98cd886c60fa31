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
