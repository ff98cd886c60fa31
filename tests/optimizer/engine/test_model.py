"""The engine's input types validate themselves: catalogue, problem and billing errors name the plan and field."""

import numpy as np
import pytest

from optimizer.engine import (
    Billing,
    Catalogue,
    CatalogueError,
    Problem,
    ProblemError,
    price,
)
from tests.optimizer.engine.reference import problem_of, two_plan_catalogue


@pytest.mark.parametrize(
    ("field", "value"),
    [("overage_rate", 0.0), ("overage_rate", -1.0), ("overage_block_mb", 0.0), ("monthly_cost", -2.0), ("included_mb", -1.0)],
)
def test_catalogue_validation_names_plan_and_field(field, value):
    cat = two_plan_catalogue()
    arr = getattr(cat, field).copy()
    arr[1] = value
    bad = Catalogue(**{**{k: getattr(cat, k) for k in ("plan_ids", "monthly_cost", "included_mb", "overage_rate",
                                                       "overage_block_mb", "fee_per_sim", "pooled")}, field: arr})
    with pytest.raises(CatalogueError) as exc:
        bad.validate()
    assert exc.value.plan_id == "BIG" and exc.value.field == field
    assert "BIG" in str(exc.value) and field in str(exc.value)
    with pytest.raises(CatalogueError):
        problem_of(bad, [1.0])



def test_plans_no_group_allows_and_nobody_uses_are_not_validated():
    cat = two_plan_catalogue()
    rates = cat.overage_rate.copy()
    rates[1] = 0.0
    bad = Catalogue(cat.plan_ids, cat.monthly_cost, cat.included_mb, rates, cat.overage_block_mb, cat.fee_per_sim, cat.pooled)
    pr = Problem(catalogue=bad, usage_mb=np.array([1.0]), group=np.zeros(1, np.int32), allowed=np.array([[True, False]]))
    assert price(pr, [0]).total == pytest.approx(5.0)



@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"usage_mb": [1.0, -1.0]}, "negative"),
        ({"usage_mb": [1.0, float("nan")]}, "finite"),
        ({"group": [0, 3]}, "group values"),
        ({"charge_type": "tax"}, "charge_type"),
        ({"current_plan": [0, 7]}, "current_plan"),
        ({"allowed": np.ones((1, 3), bool)}, "allowed"),
    ],
)
def test_problem_validation(kwargs, message):
    base = {"catalogue": two_plan_catalogue(), "usage_mb": [1.0, 2.0], "group": [0, 0], "allowed": np.ones((1, 2), bool)}
    with pytest.raises(ProblemError, match=message):
        Problem(**{**base, **kwargs})



def test_billing_validation():
    with pytest.raises(ProblemError):
        Billing(30, 31, True)
    with pytest.raises(ProblemError):
        Billing(0, 0, False)
    assert Billing(30, 12, True).factor == pytest.approx(0.4)
    assert Billing(30, 12, False).factor == 1.0

