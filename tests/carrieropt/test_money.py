"""Money helpers: per-SIM shares that add up to the stored total to the last place."""
import math
from decimal import Decimal

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from carrieropt.money import money_shares, to_money


def test_three_thirds_add_up_to_the_whole_not_to_one_unit_less():
    shares = money_shares([1 / 3, 1 / 3, 1 / 3], 1.0)
    assert shares == ["0.3334", "0.3333", "0.3333"]  # rounding each alone would give 0.9999
    assert sum(Decimal(s) for s in shares) == Decimal("1.0000")


def test_unknown_shares_stay_unknown_and_take_no_part():
    assert money_shares([2.5, math.nan, 0.12345], 2.62345) == ["2.5000", None, "0.1235"]


@given(st.lists(st.floats(min_value=0, max_value=5_000, allow_nan=False), min_size=1, max_size=300))
def test_rounded_shares_always_add_up_to_the_rounded_total_and_each_moves_less_than_a_unit(values):
    total = float(np.sum(values))
    shares = money_shares(values, total)
    assert sum(Decimal(s) for s in shares) == to_money(total)
    for value, share in zip(values, shares, strict=True):
        assert abs(Decimal(share) - Decimal(repr(value))) < Decimal("0.0001") + Decimal("1e-9")
