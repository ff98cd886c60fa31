"""Cost model: hand-checked prices from the spec, an independent loop-based pricer, validation, no Django in the engine."""
import ast
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from optimizer.engine import (
    Billing,
    Catalogue,
    CatalogueError,
    Problem,
    ProblemError,
    baseline_assignment,
    price,
    sim_costs,
    synthetic,
)

ENGINE_DIR = Path(__file__).resolve().parents[1] / "optimizer" / "engine"


def reference_price(problem: Problem, assignment) -> float:
    """The spec's formulas, one SIM at a time; shares nothing with the engine but the input arrays."""
    cat = problem.catalogue
    bl = problem.billing
    f = bl.days_remaining / bl.days_in_cycle if bl.prorate else 1.0
    rate_on = problem.charge_type in ("both", "rate")
    over_on = problem.charge_type in ("both", "overage")

    def blocks(x, b):
        return max(math.ceil(x / b - 1e-9), 0) if x > 0 else 0

    total = 0.0
    pools: dict[tuple[int, int], list] = {}
    for i in range(problem.n_sims):
        p = int(assignment[i])
        if p < 0:
            continue
        u = float(problem.usage_mb[i])
        allowance = f * float(cat.included_mb[p])
        if rate_on:
            total += f * float(cat.monthly_cost[p]) + float(cat.fee_per_sim[p])
        if cat.pooled[p]:
            pool = pools.setdefault((int(problem.group[i]), p), [0, 0.0])
            pool[0] += 1
            pool[1] += u
        elif over_on:
            total += float(cat.overage_rate[p]) * blocks(u - allowance, float(cat.overage_block_mb[p]))
    if over_on:
        for (_, p), (n, used) in pools.items():
            allowance = f * float(cat.included_mb[p])
            total += float(cat.overage_rate[p]) * blocks(used - n * allowance, float(cat.overage_block_mb[p]))
    return total


def two_plan_catalogue(pooled=(True, False), fee=(0.0, 0.0)):
    return Catalogue(
        plan_ids=("SMALL", "BIG"),
        monthly_cost=np.array([5.0, 20.0]),
        included_mb=np.array([10.0, 100.0]),
        overage_rate=np.array([0.5, 0.2]),
        overage_block_mb=np.array([2.0, 1.0]),
        fee_per_sim=np.array(fee),
        pooled=np.array(pooled),
    )


def problem_of(cat, usage, group=None, groups=1, **kw):
    usage = np.asarray(usage, dtype=float)
    group = np.zeros(len(usage), dtype=np.int32) if group is None else np.asarray(group, dtype=np.int32)
    return Problem(catalogue=cat, usage_mb=usage, group=group, allowed=np.ones((groups, len(cat)), bool), **kw)


def test_pooled_plan_shares_one_allowance_and_rounds_blocks_up():
    cat = two_plan_catalogue()
    # Three SIMs on the pooled SMALL plan: 30 MB allowance, 35 MB used -> 5 MB over = 3 blocks of 2 MB.
    pr = problem_of(cat, [0.0, 15.0, 20.0])
    p = price(pr, [0, 0, 0])
    assert p.total == pytest.approx(3 * 5.0 + 3 * 0.5)
    assert p.pool_blocks[0, 0] == 3


def test_individual_plan_charges_each_sim_its_own_overage():
    cat = two_plan_catalogue()
    # BIG is individual: 100 MB each; 101.5 MB -> 2 blocks of 1 MB; 50 MB -> none.
    pr = problem_of(cat, [101.5, 50.0])
    assert price(pr, [1, 1]).total == pytest.approx(2 * 20.0 + 2 * 0.2)


def test_block_boundary_tolerance_and_zero_overage():
    cat = two_plan_catalogue()
    pr = problem_of(cat, [110.0, 100.0 + 1e-12])
    # Exactly 10 MB over is 10 blocks, not 11; a float hair over the allowance is no block at all.
    assert price(pr, [1, 1]).total == pytest.approx(2 * 20.0 + 10 * 0.2)


def test_pools_are_per_group_and_plan():
    cat = two_plan_catalogue()
    pr = problem_of(cat, [20.0, 0.0], group=[0, 1], groups=2)
    # Together they would fit 20 MB in 2 x 10 MB; apart, group 0's SIM is 10 MB over = 5 blocks.
    p = price(pr, [0, 0])
    assert p.per_group.tolist() == pytest.approx([5.0 + 5 * 0.5, 5.0])
    assert p.total == pytest.approx(reference_price(pr, [0, 0]))


def test_proration_scales_charge_and_allowance_not_fees():
    cat = two_plan_catalogue(fee=(1.0, 1.0))
    pr = problem_of(cat, [8.0], billing=Billing(30, 15, True))
    # Half a cycle: 2.5 charge + 1.0 fee, 5 MB allowance, 3 MB over -> 2 blocks of 2 MB.
    assert price(pr, [0]).total == pytest.approx(2.5 + 1.0 + 2 * 0.5)
    # Without the prorate flag nothing scales.
    pr2 = problem_of(cat, [8.0], billing=Billing(30, 15, False))
    assert price(pr2, [0]).total == pytest.approx(6.0)


@pytest.mark.parametrize(("charge_type", "expected"), [("both", 5.0 + 1.0 + 3 * 0.5), ("rate", 6.0), ("overage", 1.5)])
def test_charge_type_narrows_what_is_counted(charge_type, expected):
    cat = two_plan_catalogue(fee=(1.0, 1.0))
    pr = problem_of(cat, [15.0], charge_type=charge_type)
    assert price(pr, [0]).total == pytest.approx(expected)


def test_breakdowns_add_up_and_match_reference_on_a_fleet():
    pr = synthetic.fleet(3000, pooled="mixed", groups=3, seed=4, prorate=True, fee_per_sim=0.3)
    for assignment in (pr.current_plan, baseline_assignment(pr)):
        p = price(pr, assignment)
        assert p.total == pytest.approx(reference_price(pr, assignment), rel=1e-12)
        assert p.per_group.sum() == pytest.approx(p.total, rel=1e-12)
        assert p.per_plan.sum() == pytest.approx(p.total, rel=1e-12)
        assert p.rate + p.overage == pytest.approx(p.total, rel=1e-12)


def test_sim_costs_sum_to_the_price_and_overage_follows_usage_above_allowance():
    cat = two_plan_catalogue()
    pr = problem_of(cat, [0.0, 15.0, 25.0])
    costs = sim_costs(pr, [0, 0, 0])
    # Pool: 40 used of 30 -> 5 blocks = 2.5; SIM 2 is 5 MB and SIM 3 15 MB above 10 MB: shares 1/4 and 3/4.
    assert costs.tolist() == pytest.approx([5.0, 5.0 + 2.5 * 0.25, 5.0 + 2.5 * 0.75])
    pr2 = synthetic.fleet(2000, pooled="mixed", groups=2, seed=5)
    c = sim_costs(pr2, pr2.current_plan)
    assert c.sum() == pytest.approx(price(pr2, pr2.current_plan).total, rel=1e-12)


def test_unknown_current_plan_is_unpriced_not_free():
    pr = synthetic.fleet(500, seed=6, unknown_current=0.2)
    p = price(pr, pr.current_plan)
    unknown = pr.current_plan < 0
    assert p.unpriced == unknown.sum() > 0
    c = sim_costs(pr, pr.current_plan)
    assert np.isnan(c[unknown]).all() and np.isfinite(c[~unknown]).all()
    assert np.nansum(c) == pytest.approx(p.total, rel=1e-12)


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


def test_engine_sources_import_no_django():
    for path in sorted(ENGINE_DIR.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not any(n == "django" or n.startswith("django.") for n in names), f"{path.name} imports {names}"
        # One line saying what the module owns.
        assert ast.get_docstring(tree), f"{path.name} has no module docstring"


def test_engine_imports_and_runs_with_django_unavailable():
    root = ENGINE_DIR.parents[1]
    code = f"""
import sys, types, importlib.abc
class NoDjango(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "django" or name.startswith("django."):
            raise ImportError("django is not available here")
sys.meta_path.insert(0, NoDjango())
pkg = types.ModuleType("optimizer")  # bypass the Django app's package __init__
pkg.__path__ = [{str(root / "optimizer")!r}]
sys.modules["optimizer"] = pkg
from optimizer.engine import synthetic, solve_certified, price
pr = synthetic.fleet(200, seed=1)
sol = solve_certified(pr)
assert abs(price(pr, sol.assignment).total - sol.total_cost) < 1e-6
assert not [m for m in sys.modules if m == "django" or m.startswith("django.")]
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
