"""optimize_file: outputs that recompute, every input error named by file/line/field with nothing written, no database."""
import csv
import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from optimizer.engine import Problem, synthetic
from tests.optimizer.engine.reference import reference_price

ROOT = Path(__file__).resolve().parents[2]
SUMMARY_KEYS = {"total_cost", "baseline_cost", "lower_bound", "gap", "savings", "devices", "method", "solve_seconds", "groups"}


@pytest.fixture
def files(tmp_path):
    """A three-group mixed fleet written in the offline format (no database involved)."""
    pr = synthetic.fleet(1500, pooled="mixed", groups=3, seed=21, prorate=True, fee_per_sim=0.1)
    plans, devices = tmp_path / "plans.json", tmp_path / "devices.csv"
    synthetic.write_problem_files(pr, plans, devices)
    return pr, plans, devices, tmp_path / "out" / "assignments.csv", tmp_path / "out" / "summary.json"


def run(plans, devices, out, summary, *extra, stderr=None):
    out.parent.mkdir(exist_ok=True)
    stdout, err = io.StringIO(), stderr if stderr is not None else io.StringIO()
    call_command("optimize_file", str(plans), str(devices), "--out", str(out), "--summary", str(summary), *extra,
                 stdout=stdout, stderr=err)
    return stdout.getvalue(), err.getvalue() if hasattr(err, "getvalue") else ""


def read_assignment(pr: Problem, path: Path) -> np.ndarray:
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["iccid", "plan_id"]
    index = {p: i for i, p in enumerate(pr.catalogue.plan_ids)}
    assert [r[0] for r in rows[1:]] == [str(8901260000000000000 + i) for i in range(pr.n_sims)]
    return np.array([index[r[1]] for r in rows[1:]])


def test_certified_run_writes_outputs_that_recompute(files):
    pr, plans, devices, out, summary = files
    stdout, stderr = run(plans, devices, out, summary)
    assert "certified: total" in stdout and "gap" in stdout
    assert "read 1,500 devices in 3 group(s)" in stderr
    assignment = read_assignment(pr, out)
    assert pr.allowed[pr.group, assignment].all()
    s = json.loads(summary.read_text())
    assert set(s) >= SUMMARY_KEYS
    assert s["method"] == "certified" and s["devices"] == 1500
    assert s["total_cost"] == pytest.approx(reference_price(pr, assignment), rel=1e-9)
    assert s["baseline_cost"] == pytest.approx(reference_price(pr, pr.current_plan), rel=1e-9)
    assert s["savings"] == pytest.approx(s["baseline_cost"] - s["total_cost"])
    assert s["lower_bound"] <= s["total_cost"]
    assert s["gap"] == pytest.approx((s["total_cost"] - s["lower_bound"]) / s["lower_bound"])
    assert s["gap_pct"] == pytest.approx(100 * s["gap"])
    assert set(s["groups"]) == {"G1", "G2", "G3"}
    for name, g in s["groups"].items():
        assert SUMMARY_KEYS - {"groups", "method", "solve_seconds"} <= set(g), name
        members = pr.group == pr.group_names.index(name)
        assert g["devices"] == members.sum()
        assert g["lower_bound"] <= g["total_cost"] + 1e-9
    assert sum(g["total_cost"] for g in s["groups"].values()) == pytest.approx(s["total_cost"])
    assert s["changes"] == int((assignment != pr.current_plan).sum()) > 0
    assert sum(g["changes"] for g in s["groups"].values()) == s["changes"]
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]


def test_legacy_method_has_no_bound_and_never_beats_certified(files):
    pr, plans, devices, out, summary = files
    run(plans, devices, out, summary, "--method", "legacy")
    s = json.loads(summary.read_text())
    assert s["method"] == "legacy" and s["lower_bound"] is None and s["gap"] is None
    assert s["total_cost"] == pytest.approx(reference_price(pr, read_assignment(pr, out)), rel=1e-9)
    run(plans, devices, out, summary)
    assert json.loads(summary.read_text())["total_cost"] <= s["total_cost"] + 1e-9


def test_unknown_current_plans_make_the_baseline_null_and_say_so(tmp_path):
    pr = synthetic.fleet(300, seed=22, unknown_current=0.1)
    plans, devices = tmp_path / "plans.json", tmp_path / "devices.csv"
    synthetic.write_problem_files(pr, plans, devices)
    out, summary = tmp_path / "a.csv", tmp_path / "s.json"
    run(plans, devices, out, summary)
    s = json.loads(summary.read_text())
    assert s["baseline_cost"] is None and s["savings"] is None
    assert any("no current plan" in n for n in s["notes"])
    assert s["groups"]["G1"]["devices_current_plan_unknown"] == (pr.current_plan < 0).sum()


def test_plan_limit_skips_groups_and_keeps_current_plans(files):
    pr, plans, devices, out, summary = files
    run(plans, devices, out, summary, "--method", "legacy", "--max-plans", "6")
    s = json.loads(summary.read_text())
    over = [pr.group_names[g] for g in range(3) if pr.allowed[g].sum() > 6]
    assert over and s["skipped_groups"] == over
    assignment = read_assignment(pr, out)
    for name in over:
        members = pr.group == pr.group_names.index(name)
        assert np.array_equal(assignment[members], pr.current_plan[members])


PLANS = {
    "currency": "USD",
    "billing": {"days_in_cycle": 30, "days_remaining": 30, "prorate": False},
    "charge_type": "both",
    "plans": [
        {"id": "M2M-5MB", "monthly_cost": 3.0, "included_mb": 5, "overage_rate": 0.5, "overage_block_mb": 1,
         "fee_per_sim": 0.0, "pooled": True},
        {"id": "M2M-50MB", "monthly_cost": 7.0, "included_mb": 50, "overage_rate": 0.1, "overage_block_mb": 1,
         "fee_per_sim": 0.0, "pooled": True},
    ],
    "groups": {"G1": ["M2M-5MB", "M2M-50MB"]},
}
DEVICES = [
    "iccid,usage_mb,current_plan,group",
    "8901260000000000001,12.5,M2M-50MB,G1",
    "8901260000000000002,0.4,M2M-5MB,G1",
    "8901260000000000003,61.0,M2M-50MB,G1",
]


def plan_line(text: str, plan_index: int, field: str) -> int:
    """Line of `field` inside the plan_index-th plan of the pretty-printed plans.json."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if '"id":' in line]
    for i in range(starts[plan_index], len(lines)):
        if f'"{field}":' in lines[i]:
            return i + 1
    raise AssertionError(field)


def write_case(tmp_path, plans=PLANS, devices=DEVICES):
    p, d = tmp_path / "plans.json", tmp_path / "devices.csv"
    p.write_text(json.dumps(plans, indent=2))
    d.write_text("\n".join(devices) + "\n")
    return p, d


def assert_refused(tmp_path, p, d, file, line, field, words, iccid=None):
    out, summary = tmp_path / "a.csv", tmp_path / "s.json"
    with pytest.raises(CommandError) as exc:
        run(p, d, out, summary)
    msg = str(exc.value)
    where = f"{file}, line {line}" + (f", ICCID {iccid}" if iccid else "")
    assert msg.startswith(f"{where}, field {field!r}:"), msg
    for w in words:
        assert w in msg, msg
    assert "np." not in msg, msg
    assert "nothing written" in msg
    assert not out.exists() and not summary.exists()
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize(
    ("row", "field", "words"),
    [
        ("8901260000000000009", "usage_mb", ["malformed row", "1 fields"]),
        ("8901260000000000009,3.0,NOPE,G1", "current_plan", ["unknown rate plan 'NOPE'"]),
        ("8901260000000000002,3.0,M2M-5MB,G1", "iccid", ["duplicate ICCID 8901260000000000002", "first on line 3"]),
        ("8901260000000000009,-2.5,M2M-5MB,G1", "usage_mb", ["negative usage"]),
        ("8901260000000000009,lots,M2M-5MB,G1", "usage_mb", ["not a number", "'lots'"]),
        ("8901260000000000009,nan,M2M-5MB,G1", "usage_mb", ["not a finite number"]),
        ("8901260000000000009,1.0,M2M-5MB,G9", "group", ["unknown group 'G9'"]),
        (",1.0,M2M-5MB,G1", "iccid", ["empty ICCID"]),
    ],
)
def test_bad_device_rows_are_refused_by_line_and_field(tmp_path, row, field, words):
    p, d = write_case(tmp_path, devices=DEVICES + [row, "8901260000000000010,1.0,M2M-5MB,G1"])
    # Once the row's ICCID is read, every message names it too.
    iccid = None if field == "iccid" or "," not in row else row.split(",")[0]
    assert_refused(tmp_path, p, d, "devices.csv", 5, field, words, iccid=iccid)


REAL_FLEET = [
    "iccid,usage_mb,current_plan,group,days_active,movable",
    "8901260000000000001,12.5,M2M-50MB,G1,30,1",
    "8901260000000000002,0.4,M2M-5MB,G1,6,true",
    "8901260000000000003,61.0,M2M-50MB,G1,30,0",
    "8901260000000000004,3.0,M2M-5MB,G1,15,FALSE",
]


@pytest.mark.parametrize(
    ("row", "field", "words"),
    [
        ("8901260000000000009,1.0,M2M-5MB,G1,31,1", "days_active", ["31 is outside the cycle", "between 0 and days_in_cycle (30)"]),
        ("8901260000000000009,1.0,M2M-5MB,G1,-1,1", "days_active", ["-1 is outside the cycle"]),
        ("8901260000000000009,1.0,M2M-5MB,G1,12.5,1", "days_active", ["not a whole number: '12.5'"]),
        ("8901260000000000009,1.0,M2M-5MB,G1,1_0,1", "days_active", ["not a whole number: '1_0'"]),
        ("8901260000000000009,1.0,M2M-5MB,G1,,1", "days_active", ["empty", "0..30"]),
        ("8901260000000000009,1.0,M2M-5MB,G1,30,yes", "movable", ["must be 1, 0, true or false, got 'yes'"]),
        ("8901260000000000009,1.0,,G1,30,0", "movable", ["needs a current_plan"]),
        ("8901260000000000009,5_000,M2M-5MB,G1,30,1", "usage_mb", ["not a number: '5_000'"]),
        ("8901260000000000009,0x10,M2M-5MB,G1,30,1", "usage_mb", ["not a number: '0x10'"]),
        ("8901260000000000009,inf,M2M-5MB,G1,30,1", "usage_mb", ["not a finite number"]),
    ],
)
def test_bad_days_active_movable_and_numbers_name_line_iccid_and_field(tmp_path, row, field, words):
    p, d = write_case(tmp_path, devices=REAL_FLEET + [row])
    assert_refused(tmp_path, p, d, "devices.csv", 6, field, words, iccid="8901260000000000009")


def test_days_active_prorates_and_pinned_sims_keep_their_plan(tmp_path):
    plans = json.loads(json.dumps(PLANS))
    plans["billing"]["prorate"] = True
    p, d = write_case(tmp_path, plans=plans, devices=REAL_FLEET)
    out, summary = tmp_path / "a.csv", tmp_path / "s.json"
    run(p, d, out, summary)
    s = json.loads(summary.read_text())
    with open(out, newline="") as fh:
        got = {r["iccid"]: r["plan_id"] for r in csv.DictReader(fh)}
    assert got["8901260000000000003"] == "M2M-50MB" and got["8901260000000000004"] == "M2M-5MB"
    assert s["devices_not_movable"] == 2 and s["devices_prorated"] == 2
    # By hand from the cost model, f = days_active / 30, every assignment of the two movable SIMs.
    cat = {q["id"]: q for q in plans["plans"]}
    usage = {"8901260000000000001": 12.5, "8901260000000000002": 0.4, "8901260000000000003": 61.0,
             "8901260000000000004": 3.0}
    factor = {"8901260000000000001": 1.0, "8901260000000000002": 6 / 30, "8901260000000000003": 1.0,
              "8901260000000000004": 0.5}

    def cost(assign):
        total, pools = 0.0, {}
        for iccid, pid in assign.items():
            q = cat[pid]
            total += factor[iccid] * q["monthly_cost"]
            used, allowance = pools.get(pid, (0.0, 0.0))
            pools[pid] = (used + usage[iccid], allowance + factor[iccid] * q["included_mb"])
        for pid, (used, allowance) in pools.items():
            over = used - allowance
            total += cat[pid]["overage_rate"] * (math.ceil(over / cat[pid]["overage_block_mb"] - 1e-9) if over > 0 else 0)
        return total

    best = min(cost({"8901260000000000001": a, "8901260000000000002": b, "8901260000000000003": "M2M-50MB",
                     "8901260000000000004": "M2M-5MB"}) for a in cat for b in cat)
    assert s["total_cost"] == pytest.approx(cost(got)) == pytest.approx(best)
    current = {r.split(",")[0]: r.split(",")[2] for r in REAL_FLEET[1:]}
    assert s["baseline_cost"] == pytest.approx(cost(current))
    assert s["changes"] == sum(got[k] != current[k] for k in got)
    # Without prorate every factor is 1 whatever days_active says.
    p, d = write_case(tmp_path, devices=REAL_FLEET)
    run(p, d, out, summary)
    assert json.loads(summary.read_text())["devices_prorated"] == 0


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("overage_rate", 0, ["rate plan 'M2M-50MB'", "must be > 0"]),
        ("overage_rate", -0.1, ["must be > 0, got -0.1"]),
        ("overage_block_mb", 0, ["rate plan 'M2M-50MB'", "must be > 0"]),
        ("overage_block_mb", -1, ["must be > 0"]),
        ("monthly_cost", "7", ["must be a number"]),
    ],
)
def test_bad_plans_are_refused_by_line_and_field(tmp_path, field, value, words):
    plans = json.loads(json.dumps(PLANS))
    plans["plans"][1][field] = value
    p, d = write_case(tmp_path, plans=plans)
    assert_refused(tmp_path, p, d, "plans.json", plan_line(p.read_text(), 1, field), field, words)


def test_other_file_problems_are_refused(tmp_path):
    p, d = write_case(tmp_path, devices=["iccid,current_plan", "1,M2M-5MB"])
    assert_refused(tmp_path, p, d, "devices.csv", 1, "usage_mb", ["missing required column"])
    p.write_text('{"plans": [\n  {"id": "X",}\n]}')
    out, summary = tmp_path / "a.csv", tmp_path / "s.json"
    with pytest.raises(CommandError, match=r"plans\.json, line 2: invalid JSON"):
        run(p, d, out, summary)
    plans = json.loads(json.dumps(PLANS))
    plans["groups"]["G1"].append("GHOST")
    p, d = write_case(tmp_path, plans=plans)
    with pytest.raises(CommandError, match=r"field 'groups\.G1': unknown rate plan 'GHOST'"):
        run(p, d, out, summary)


def test_a_failure_while_writing_leaves_no_output(tmp_path):
    p, d = write_case(tmp_path)
    out, summary = tmp_path / "a.csv", tmp_path / "missing-dir" / "s.json"
    with pytest.raises(CommandError, match="cannot write outputs"):
        call_command("optimize_file", str(p), str(d), "--out", str(out), "--summary", str(summary),
                     stdout=io.StringIO(), stderr=io.StringIO())
    assert not out.exists()
    assert not list(tmp_path.glob(".*.tmp"))


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_only_on_a_terminal(tmp_path):
    p, d = write_case(tmp_path)
    out, summary = tmp_path / "a.csv", tmp_path / "s.json"
    _, plain = run(p, d, out, summary)
    assert "optimizing" not in plain and "read 3 devices" in plain
    term = FakeTerminal()
    run(p, d, out, summary, stderr=term)
    assert "optimizing (certified)" in term.getvalue()


def test_spec_example_runs_with_default_group(tmp_path):
    plans = {k: v for k, v in PLANS.items() if k != "groups"}
    p, d = write_case(tmp_path, plans=plans, devices=["iccid,usage_mb", "8901,12.5", "8902,0", "8903,61"])
    out, summary = tmp_path / "a.csv", tmp_path / "s.json"
    run(p, d, out, summary)
    s = json.loads(summary.read_text())
    assert list(s["groups"]) == ["default"] and s["devices"] == 3
    # Three SIMs are few enough to list every assignment: the answer is proven optimal, so the gap is zero.
    assert s["gap"] == pytest.approx(0.0, abs=1e-8)
    assert s["groups"]["default"]["winning_strategy"] == "exact enumeration"


def test_runs_in_a_fresh_process_against_an_unmigrated_database(tmp_path):
    """The command never opens the database: an empty SQLite file stays empty."""
    p, d = write_case(tmp_path)
    db = tmp_path / "empty.sqlite3"
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{db}"}
    out, summary = tmp_path / "a.csv", tmp_path / "s.json"
    res = subprocess.run(
        [sys.executable, "manage.py", "optimize_file", str(p), str(d), "--out", str(out), "--summary", str(summary)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert out.exists() and summary.exists()
    assert not db.exists() or db.stat().st_size == 0


def test_a_prorated_fleet_with_pinned_sims_round_trips_through_the_files(tmp_path):
    pr = synthetic.fleet(1500, pooled="mixed", groups=3, seed=23, prorated=0.1, pinned=0.05)
    plans, devices = tmp_path / "plans.json", tmp_path / "devices.csv"
    synthetic.write_problem_files(pr, plans, devices)
    out, summary = tmp_path / "a.csv", tmp_path / "s.json"
    run(plans, devices, out, summary)
    s = json.loads(summary.read_text())
    assignment = read_assignment(pr, out)
    pinned = ~pr.movable
    assert s["devices_not_movable"] == pinned.sum() > 0 and s["devices_prorated"] == (pr.factor < 1).sum() > 0
    assert np.array_equal(assignment[pinned], pr.current_plan[pinned])
    assert s["total_cost"] == pytest.approx(reference_price(pr, assignment), rel=1e-9)
    assert s["baseline_cost"] == pytest.approx(reference_price(pr, pr.current_plan), rel=1e-9)
    assert s["lower_bound"] <= s["total_cost"]
    assert s["changes"] == int((assignment != pr.current_plan).sum())


def test_the_pool_column_makes_groups_share_pools(tmp_path):
    pr = synthetic.fleet(1200, pooled="mixed", groups=3, seed=24, pools="account", prorated=0.1, pinned=0.05)
    plans, devices = tmp_path / "plans.json", tmp_path / "devices.csv"
    synthetic.write_problem_files(pr, plans, devices)
    out, summary = tmp_path / "a.csv", tmp_path / "s.json"
    run(plans, devices, out, summary)
    s = json.loads(summary.read_text())
    assignment = read_assignment(pr, out)
    assert s["pool_scopes"] == 1
    assert s["total_cost"] == pytest.approx(reference_price(pr, assignment), rel=1e-9)
    assert s["lower_bound"] <= s["total_cost"]
    assert all(g["lower_bound"] is None for g in s["groups"].values())
    assert sum(g["total_cost"] for g in s["groups"].values()) == pytest.approx(s["total_cost"])
    assert any("pool column" in n for n in s["notes"])
    moved = pr.movable
    assert pr.allowed[pr.group[moved], assignment[moved]].all()
    assert np.array_equal(assignment[~moved], pr.current_plan[~moved])


def test_an_empty_pool_key_is_refused(tmp_path):
    p, d = write_case(tmp_path, devices=["iccid,usage_mb,current_plan,group,pool", "8901,1.0,M2M-5MB,G1,A",
                                         "8902,2.0,M2M-5MB,G1,"])
    assert_refused(tmp_path, p, d, "devices.csv", 3, "pool", ["empty"], iccid="8902")


def _with_objective(plans: Path, objective) -> Path:
    doc = json.loads(plans.read_text())
    doc["objective"] = objective
    out = plans.with_name("plans_budget.json")
    out.write_text(json.dumps(doc, indent=2))
    return out


def test_change_budget_and_frontier_in_the_summary(files):
    pr, plans, devices, out, summary = files
    budgeted = _with_objective(plans, {"max_changes": 40})
    stdout, stderr = run(budgeted, devices, out, summary, "--frontier", "6")
    assignment = read_assignment(pr, out)
    changes = int((assignment != pr.current_plan).sum())
    s = json.loads(summary.read_text())
    assert s["max_changes"] == 40 and s["changes"] == changes <= 40
    assert s["total_cost"] == pytest.approx(reference_price(pr, assignment), rel=1e-9)
    assert s["lower_bound"] <= s["total_cost"]
    assert s["unconstrained"]["changes"] > 40
    assert s["unconstrained"]["total_cost"] <= s["total_cost"]
    fr = s["frontier"]
    assert [set(p) >= {"max_changes", "total_cost", "lower_bound"} for p in fr] == [True] * len(fr)
    assert fr[0]["max_changes"] == 0 and fr[-1]["max_changes"] == s["unconstrained"]["changes"]
    assert 2 <= len(fr) <= 6
    assert fr[0]["total_cost"] == pytest.approx(s["baseline_cost"], rel=1e-12)
    for p, q in zip(fr, fr[1:], strict=False):
        assert q["total_cost"] <= p["total_cost"] and q["lower_bound"] <= p["lower_bound"]
        assert p["lower_bound"] <= p["total_cost"] and p["changes"] <= p["max_changes"]
    assert "budget 40" in stdout and "at most 0 changes" in stdout and "% of the savings" in stdout
    assert "frontier: " in stderr


def test_unconstrained_summary_says_no_budget(files):
    pr, plans, devices, out, summary = files
    run(plans, devices, out, summary)
    s = json.loads(summary.read_text())
    assert s["max_changes"] is None and "frontier" not in s


@pytest.mark.parametrize(
    ("objective", "field"),
    [(5, "objective"), ({"max_changes": -1}, "objective.max_changes"), ({"max_changes": 2.5}, "objective.max_changes"),
     ({"max_changes": True}, "objective.max_changes"), ({"min_cost": 1}, "objective.min_cost")],
)
def test_bad_objective_names_its_field(files, objective, field):
    pr, plans, devices, out, summary = files
    with pytest.raises(CommandError, match=rf"field '{field}'"):
        run(_with_objective(plans, objective), devices, out, summary)
    assert not out.exists() and not summary.exists()


def test_budget_needs_every_current_plan(files, tmp_path):
    pr, plans, devices, out, summary = files
    rows = devices.read_text().splitlines()
    cols = rows[3].split(",")
    cols[2] = ""
    rows[3] = ",".join(cols)
    devices.write_text("\n".join(rows) + "\n")
    with pytest.raises(CommandError, match=r"line 4.*field 'current_plan'.*max_changes"):
        run(_with_objective(plans, {"max_changes": 10}), devices, out, summary)


@pytest.mark.parametrize("extra", [("--frontier", "1"), ("--frontier", "5", "--method", "legacy")])
def test_frontier_options_refused(files, extra):
    pr, plans, devices, out, summary = files
    with pytest.raises(CommandError, match="--frontier"):
        run(plans, devices, out, summary, *extra)
