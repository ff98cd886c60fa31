"""CostFigures: savings, savings ratio and gap, one rule for Decimal (models, API) and float (engine)."""
import math
from decimal import Decimal as D

import numpy as np
import pytest

from optimizer.engine import CostFigures, Solution


def test_decimal_in_decimal_out():
    f = CostFigures(D("120.0000"), D("100.0000"), D("80.0000"))
    assert f.savings == D("20.0000") and isinstance(f.savings, D)
    assert f.savings_ratio == D("20") / D("120") and isinstance(f.savings_ratio, D)
    assert f.gap == D("0.25") and isinstance(f.gap, D)


def test_float_in_float_out():
    f = CostFigures(120.0, 100.0, 80.0)
    assert f.savings == 20.0 and f.savings_ratio == pytest.approx(1 / 6) and f.gap == 0.25
    assert all(isinstance(x, float) for x in (f.savings, f.savings_ratio, f.gap))


def test_missing_amounts_give_none():
    assert CostFigures(None, D("1"), D("1")).savings is None
    assert CostFigures(None, D("1"), D("1")).savings_ratio is None
    assert CostFigures(D("1"), None, D("1")).savings is None
    assert CostFigures(D("1"), None, D("1")).gap is None
    assert CostFigures(D("2"), D("1"), None).gap is None
    assert CostFigures(2.0, 1.0).gap is None
    assert CostFigures().savings is None and CostFigures().savings_ratio is None and CostFigures().gap is None


def test_zero_current_cost_has_savings_but_no_ratio():
    f = CostFigures(D("0.0000"), D("0.0000"), D("0.0000"))
    assert f.savings == 0 and f.savings_ratio is None
    assert CostFigures(0.0, 0.0).savings_ratio is None


@pytest.mark.parametrize("bound", [D("0"), D("0.0000"), D("-0.0000"), 0.0, -1e-9, float("nan"), float("inf")])
def test_gap_is_none_when_the_bound_is_zero_negative_or_not_finite(bound):
    optimized = D("0") if isinstance(bound, D) else 0.0
    assert CostFigures(optimized=optimized, bound=bound).gap is None


def test_gap_never_negative():
    assert CostFigures(optimized=D("9.9999"), bound=D("10.0000")).gap == 0
    assert CostFigures(optimized=9.999999, bound=10.0).gap == 0.0
    assert CostFigures(optimized=10.0, bound=10.0).gap == 0.0


def test_numpy_floats_count_as_floats():
    f = CostFigures(np.float64(3.0), np.float64(2.0), np.float64(1.0))
    assert f.savings == 1.0 and f.gap == 1.0


def test_decimal_and_float_are_never_mixed():
    with pytest.raises(TypeError):
        CostFigures(D("1"), 1.0)
    with pytest.raises(TypeError):
        CostFigures(optimized=1.0, bound=D("1"))
    CostFigures(D("1"), None, D("1"))  # None mixes with either


def _solution(total, bound):
    return Solution(np.zeros(1, np.int32), total, bound, np.array([total]), None, "x", 0.0)


def test_solution_gap_follows_the_same_rule():
    assert _solution(11.0, 10.0).gap == pytest.approx(0.1)
    assert _solution(11.0, None).gap is None
    assert _solution(0.0, 0.0).gap is None  # no bound to measure against
    assert _solution(5.0, 5.000001).gap == 0.0
    assert math.isclose(_solution(11.0, 10.0).gap, CostFigures(optimized=11.0, bound=10.0).gap)
