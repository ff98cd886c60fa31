"""Offline problem files: read plans.json and stream devices.csv into a Problem, write assignments and summary atomically."""
from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .figures import CostFigures
from .model import CHARGE_TYPES, Billing, Catalogue, CatalogueError, Problem, ProblemError, Solution
from .pricing import price

DEFAULT_GROUP = "default"
# A decimal number as people write one: no digit separators (Python's float() takes "5_000"), no inf/nan.
_DECIMAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_INTEGER = re.compile(r"[+-]?\d+")
_TRUE, _FALSE = ("1", "true"), ("0", "false")
PLAN_NUMBER_FIELDS = ("monthly_cost", "included_mb", "overage_rate", "overage_block_mb", "fee_per_sim")
REQUIRED_PLAN_FIELDS = ("id", "monthly_cost", "included_mb", "overage_rate", "overage_block_mb")


class FileFormatError(ValueError):
    """Bad input file: says which file, which line, which field, and what is wrong with it."""

    def __init__(self, *, file, line: int | None, field: str | None, message: str, iccid: str | None = None):
        self.file = str(file)
        self.line = line
        self.field = field
        self.message = message
        self.iccid = iccid
        where = Path(self.file).name
        if line is not None:
            where += f", line {line}"
        if iccid:
            where += f", ICCID {iccid}"
        if field is not None:
            where += f", field {field!r}"
        super().__init__(f"{where}: {message}")


# --------------------------------------------------------------------------- plans.json


_WS = re.compile(r"\s*")


def _members(text: str, start: int, decoder: json.JSONDecoder) -> dict[str, tuple[int, int]]:
    """Key -> (value start, value end) offsets of the JSON object starting at `start` (text already valid JSON)."""
    out: dict[str, tuple[int, int]] = {}
    i = _WS.match(text, start + 1).end()
    if text[i] == "}":
        return out
    while True:
        key, i = decoder.raw_decode(text, i)
        i = _WS.match(text, i).end() + 1  # the colon
        i = _WS.match(text, i).end()
        _, end = decoder.raw_decode(text, i)
        out.setdefault(key, (i, end))
        i = _WS.match(text, end).end()
        if text[i] == "}":
            return out
        i = _WS.match(text, i + 1).end()


def _elements(text: str, start: int, decoder: json.JSONDecoder) -> list[tuple[int, int]]:
    out = []
    i = _WS.match(text, start + 1).end()
    if text[i] == "]":
        return out
    while True:
        _, end = decoder.raw_decode(text, i)
        out.append((i, end))
        i = _WS.match(text, end).end()
        if text[i] == "]":
            return out
        i = _WS.match(text, i + 1).end()


@dataclass
class PlansFile:
    path: str
    catalogue: Catalogue
    billing: Billing
    charge_type: str
    currency: str
    groups: dict[str, list[str]] | None
    # "objective": {"max_changes": K}: at most K SIMs may change plan (None: no budget).
    max_changes: int | None = None


def _number(value, *, file, line, field) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FileFormatError(file=file, line=line, field=field, message=f"must be a number, got {value!r}")
    if not math.isfinite(float(value)):
        raise FileFormatError(file=file, line=line, field=field, message=f"must be a finite number, got {value!r}")
    return float(value)


def read_plans(path) -> PlansFile:
    """Parse and validate plans.json; every problem is reported with its line and field."""
    path = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise FileFormatError(file=path, line=None, field=None, message=f"cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise FileFormatError(file=path, line=None, field=None, message=f"not UTF-8 text ({exc.reason})") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FileFormatError(file=path, line=exc.lineno, field=None, message=f"invalid JSON: {exc.msg}") from None

    def line_at(offset: int) -> int:
        return text.count("\n", 0, offset) + 1

    if not isinstance(doc, dict):
        raise FileFormatError(file=path, line=1, field=None, message="top level must be a JSON object")
    decoder = json.JSONDecoder()
    top = _members(text, _WS.match(text).end(), decoder)

    def top_line(key: str) -> int:
        return line_at(top[key][0]) if key in top else 1

    plans = doc.get("plans")
    if not isinstance(plans, list) or not plans:
        raise FileFormatError(file=path, line=top_line("plans"), field="plans", message="must be a non-empty list of rate plans")
    spans = _elements(text, top["plans"][0], decoder)

    ids: list[str] = []
    cols: dict[str, list[float]] = {f: [] for f in PLAN_NUMBER_FIELDS}
    pooled: list[bool] = []
    field_lines: list[dict[str, int]] = []
    for k, plan in enumerate(plans):
        start, _ = spans[k]
        plan_line = line_at(start)
        if not isinstance(plan, dict):
            raise FileFormatError(file=path, line=plan_line, field=f"plans[{k}]", message="each rate plan must be a JSON object")
        members = _members(text, start, decoder)
        lines = {key: line_at(v[0]) for key, v in members.items()}
        lines["_plan"] = plan_line
        field_lines.append(lines)
        label = f"plans[{k}]"
        for f in REQUIRED_PLAN_FIELDS:
            if f not in plan:
                raise FileFormatError(file=path, line=plan_line, field=f, message=f"{label} is missing required field {f!r}")
        pid = plan["id"]
        if not isinstance(pid, str) or not pid.strip():
            raise FileFormatError(file=path, line=lines["id"], field="id", message=f"{label}: id must be a non-empty string")
        pid = pid.strip()
        if pid in ids:
            raise FileFormatError(
                file=path, line=lines["id"], field="id", message=f"rate plan {pid!r} is defined twice (also plans[{ids.index(pid)}])"
            )
        ids.append(pid)
        for f in PLAN_NUMBER_FIELDS:
            v = plan.get(f, 0.0)
            cols[f].append(_number(v, file=path, line=lines.get(f, plan_line), field=f))
        p = plan.get("pooled", False)
        if not isinstance(p, bool):
            raise FileFormatError(file=path, line=lines.get("pooled", plan_line), field="pooled", message=f"must be true or false, got {p!r}")
        pooled.append(p)

    catalogue = Catalogue(plan_ids=tuple(ids), pooled=np.array(pooled), **{f: np.array(v) for f, v in cols.items()})
    try:
        catalogue.validate()
    except CatalogueError as exc:
        lines = field_lines[ids.index(exc.plan_id)]
        raise FileFormatError(
            file=path,
            line=lines.get(exc.field, lines["_plan"]),
            field=exc.field,
            message=f"rate plan {exc.plan_id!r}: {exc.message}",
        ) from None

    billing_doc = doc.get("billing", {})
    if not isinstance(billing_doc, dict):
        raise FileFormatError(file=path, line=top_line("billing"), field="billing", message="must be an object")
    bl = top_line("billing")
    days_in_cycle = billing_doc.get("days_in_cycle", 30)
    days_remaining = billing_doc.get("days_remaining", days_in_cycle)
    prorate = billing_doc.get("prorate", False)
    for name, value in (("days_in_cycle", days_in_cycle), ("days_remaining", days_remaining)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise FileFormatError(file=path, line=bl, field=f"billing.{name}", message=f"must be a whole number, got {value!r}")
    if not isinstance(prorate, bool):
        raise FileFormatError(file=path, line=bl, field="billing.prorate", message=f"must be true or false, got {prorate!r}")
    try:
        billing = Billing(days_in_cycle, days_remaining, prorate)
    except ProblemError as exc:
        raise FileFormatError(file=path, line=bl, field="billing", message=str(exc)) from None

    charge_type = doc.get("charge_type", "both")
    if charge_type not in CHARGE_TYPES:
        raise FileFormatError(
            file=path, line=top_line("charge_type"), field="charge_type", message=f"must be one of {', '.join(CHARGE_TYPES)}, got {charge_type!r}"
        )
    currency = doc.get("currency", "USD")
    if not isinstance(currency, str):
        raise FileFormatError(file=path, line=top_line("currency"), field="currency", message="must be a string")

    groups = doc.get("groups")
    if groups is not None:
        gl = top_line("groups")
        if not isinstance(groups, dict):
            raise FileFormatError(file=path, line=gl, field="groups", message="must map group names to lists of plan ids")
        group_lines = {k: line_at(v[0]) for k, v in _members(text, top["groups"][0], decoder).items()}
        known = set(ids)
        clean: dict[str, list[str]] = {}
        for name, plan_list in groups.items():
            line = group_lines.get(name, gl)
            if not isinstance(plan_list, list) or not all(isinstance(x, str) for x in plan_list):
                raise FileFormatError(file=path, line=line, field=f"groups.{name}", message="must be a list of plan ids")
            unknown = [x for x in plan_list if x.strip() not in known]
            if unknown:
                raise FileFormatError(
                    file=path, line=line, field=f"groups.{name}", message=f"unknown rate plan {unknown[0]!r} (not in plans)"
                )
            clean[str(name)] = [x.strip() for x in plan_list]
        groups = clean
    max_changes = None
    objective = doc.get("objective")
    if objective is not None:
        ol = top_line("objective")
        if not isinstance(objective, dict):
            raise FileFormatError(file=path, line=ol, field="objective", message='must be an object, e.g. {"max_changes": 500}')
        unknown = sorted(set(objective) - {"max_changes"})
        if unknown:
            raise FileFormatError(file=path, line=ol, field=f"objective.{unknown[0]}",
                                  message="unknown objective field (known: max_changes)")
        if "max_changes" in objective:
            k = objective["max_changes"]
            if isinstance(k, bool) or not isinstance(k, int) or k < 0:
                raise FileFormatError(file=path, line=ol, field="objective.max_changes",
                                      message=f"must be a whole number >= 0 (SIMs that may change plan), got {k!r}")
            max_changes = int(k)
    return PlansFile(path, catalogue, billing, charge_type, currency, groups, max_changes)


# --------------------------------------------------------------------------- devices.csv


@dataclass
class OfflineProblem:
    """A Problem read from files, with the ICCIDs in input order and the plans file's settings."""

    problem: Problem
    iccids: list[str]
    plans: PlansFile
    devices_path: str
    days_active: np.ndarray | None = None  # the column as read (None without it)


def read_devices(plans: PlansFile, path, *, chunk_rows: int = 65_536, progress=None) -> OfflineProblem:
    """Stream devices.csv (header required; iccid, usage_mb; optional current_plan, group, days_active,
    movable; extras ignored).

    progress, if given, is called with (bytes read, file size) after every chunk.
    """
    path = str(path)
    cat = plans.catalogue
    plan_index = {pid: i for i, pid in enumerate(cat.plan_ids)}
    if plans.groups is not None:
        group_names = list(plans.groups)
        group_index = {name: i for i, name in enumerate(group_names)}
        fixed_groups = True
    else:
        group_names, group_index, fixed_groups = [], {}, False

    def fail(line, field, message, iccid=None):
        raise FileFormatError(file=path, line=line, field=field, message=message, iccid=iccid)

    days_in_cycle = plans.billing.days_in_cycle

    try:
        raw = open(path, "rb")  # noqa: SIM115 - closed in the finally below; its position drives progress
    except OSError as exc:
        fail(None, None, f"cannot read: {exc.strerror}")
    size = os.fstat(raw.fileno()).st_size
    iccids: list[str] = []
    seen: dict[str, int] = {}
    usage_chunks, plan_chunks, group_chunks, days_chunks, movable_chunks, pool_chunks = [], [], [], [], [], []
    pool_index: dict[str, int] = {}
    pool_buf: list[int] = []
    usage_buf: list[float] = []
    plan_buf: list[int] = []
    group_buf: list[int] = []
    days_buf: list[int] = []
    movable_buf: list[bool] = []
    try:
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
        reader = csv.reader(text)
        try:
            header = next(reader, None)
        except (csv.Error, UnicodeDecodeError) as exc:
            fail(1, None, f"unreadable header: {exc}")
        if header is None:
            fail(1, None, "empty file: a header row iccid,usage_mb[,current_plan][,group] is required")
        cols = [h.strip().lower() for h in header]
        for required in ("iccid", "usage_mb"):
            if required not in cols:
                fail(1, required, f"missing required column {required!r} in header {header!r}")
        i_iccid, i_usage = cols.index("iccid"), cols.index("usage_mb")
        i_plan = cols.index("current_plan") if "current_plan" in cols else None
        i_group = cols.index("group") if "group" in cols else None
        i_days = cols.index("days_active") if "days_active" in cols else None
        i_movable = cols.index("movable") if "movable" in cols else None
        i_pool = cols.index("pool") if "pool" in cols else None
        names_in_order = ["iccid", "usage_mb", "current_plan", "group", "days_active", "movable", "pool"]
        positions = [i_iccid, i_usage, i_plan, i_group, i_days, i_movable, i_pool]
        needed = max(x for x in positions if x is not None) + 1

        def flush():
            usage_chunks.append(np.array(usage_buf, dtype=np.float64))
            plan_chunks.append(np.array(plan_buf, dtype=np.int32))
            group_chunks.append(np.array(group_buf, dtype=np.int32))
            days_chunks.append(np.array(days_buf, dtype=np.int32))
            movable_chunks.append(np.array(movable_buf, dtype=bool))
            pool_chunks.append(np.array(pool_buf, dtype=np.int32))
            pool_buf.clear()
            usage_buf.clear()
            plan_buf.clear()
            group_buf.clear()
            days_buf.clear()
            movable_buf.clear()
            if progress is not None:
                progress(raw.tell(), size)

        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                fail(reader.line_num, None, f"malformed row: {exc}")
            except UnicodeDecodeError as exc:
                fail(reader.line_num + 1, None, f"not UTF-8 text ({exc.reason})")
            line = reader.line_num
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) < needed:
                missing = next(n for n, p in zip(names_in_order, positions, strict=True) if p is not None and p >= len(row))
                fail(line, missing, f"malformed row: {len(row)} fields, header has {len(cols)}")
            iccid = row[i_iccid].strip()
            if not iccid:
                fail(line, "iccid", "empty ICCID")
            if iccid in seen:
                fail(line, "iccid", f"duplicate ICCID {iccid} (first on line {seen[iccid]})")
            seen[iccid] = line
            text_usage = row[i_usage].strip()
            if text_usage.lower() in ("nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"):
                fail(line, "usage_mb", f"not a finite number: {text_usage!r}", iccid)
            if not _DECIMAL.fullmatch(text_usage):
                fail(line, "usage_mb", f"not a number: {text_usage!r} (write plain digits, e.g. 5000 or 12.5)", iccid)
            usage = float(text_usage)
            if not math.isfinite(usage):
                fail(line, "usage_mb", f"not a finite number: {text_usage!r}", iccid)
            if usage < 0:
                fail(line, "usage_mb", f"negative usage: {text_usage}", iccid)
            current = -1
            if i_plan is not None:
                pid = row[i_plan].strip()
                if pid:
                    current = plan_index.get(pid, -2)
                    if current == -2:
                        fail(line, "current_plan", f"unknown rate plan {pid!r} (not in {Path(plans.path).name})", iccid)
            if current < 0 and plans.max_changes is not None:
                fail(line, "current_plan", f"required: {Path(plans.path).name} sets objective.max_changes, "
                     "and a change is counted against the current plan", iccid)
            if i_days is not None:
                text_days = row[i_days].strip()
                if not _INTEGER.fullmatch(text_days):
                    what = "empty" if not text_days else f"not a whole number: {text_days!r}"
                    fail(line, "days_active", f"{what} (days of this cycle the SIM is billed, 0..{days_in_cycle})", iccid)
                days = int(text_days)
                if not 0 <= days <= days_in_cycle:
                    fail(line, "days_active", f"{days} is outside the cycle: must be between 0 and days_in_cycle ({days_in_cycle})", iccid)
                days_buf.append(days)
            if i_movable is not None:
                text_movable = row[i_movable].strip().lower()
                if text_movable in _TRUE or not text_movable:
                    movable_buf.append(True)
                elif text_movable in _FALSE:
                    if current < 0:
                        fail(line, "movable", "0 (stays on its plan) needs a current_plan, and this row has none", iccid)
                    movable_buf.append(False)
                else:
                    fail(line, "movable", f"must be 1, 0, true or false, got {row[i_movable].strip()!r}", iccid)
            if i_pool is not None:
                key = row[i_pool].strip()
                if not key:
                    fail(line, "pool", "empty: give the SIM's pool key (e.g. the account or customer), or leave the column out", iccid)
                pool_buf.append(pool_index.setdefault(key, len(pool_index)))
            gname = row[i_group].strip() if i_group is not None else ""
            if not gname:
                if fixed_groups and len(group_names) != 1:
                    fail(line, "group", f"group is required: {Path(plans.path).name} defines {len(group_names)} groups", iccid)
                gname = group_names[0] if fixed_groups else DEFAULT_GROUP
            g = group_index.get(gname)
            if g is None:
                if fixed_groups:
                    fail(line, "group", f"unknown group {gname!r} (not in {Path(plans.path).name} groups)", iccid)
                g = group_index[gname] = len(group_names)
                group_names.append(gname)
            iccids.append(iccid)
            usage_buf.append(usage)
            plan_buf.append(current)
            group_buf.append(g)
            if len(usage_buf) >= chunk_rows:
                flush()
        flush()
    finally:
        raw.close()
    del seen

    P = len(cat)
    if fixed_groups:
        allowed = np.array([[pid in set(plans.groups[name]) for pid in cat.plan_ids] for name in group_names], dtype=bool)
        allowed = allowed.reshape(len(group_names), P)
    else:
        if not group_names:
            group_names.append(DEFAULT_GROUP)
        allowed = np.ones((len(group_names), P), dtype=bool)
    days_active = np.concatenate(days_chunks) if i_days is not None else None
    # cost-model.md: with prorate the column sets each SIM's factor; without prorate every factor is 1.
    factor = None
    if days_active is not None and plans.billing.prorate:
        factor = days_active / float(days_in_cycle)
    problem = Problem(
        catalogue=cat,
        usage_mb=np.concatenate(usage_chunks),
        group=np.concatenate(group_chunks),
        allowed=allowed,
        billing=plans.billing,
        charge_type=plans.charge_type,
        group_names=tuple(group_names),
        current_plan=np.concatenate(plan_chunks),
        factor=factor,
        movable=np.concatenate(movable_chunks) if i_movable is not None else None,
        pool=np.concatenate(pool_chunks) if i_pool is not None else None,
    )
    return OfflineProblem(problem, iccids, plans, path, days_active)


def read_problem(plans_path, devices_path, *, progress=None) -> OfflineProblem:
    return read_devices(read_plans(plans_path), devices_path, progress=progress)


# --------------------------------------------------------------------------- outputs


def _none_if_nan(x) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def build_summary(offline: OfflineProblem, solution: Solution) -> dict:
    """The run's figures, overall and per group; money unrounded so they recompute exactly."""
    problem = offline.problem
    base = price(problem, problem.current_plan)
    unknown = int(base.unpriced)
    not_allowed = ~problem.allowed[problem.group, np.maximum(problem.current_plan, 0)] & (problem.current_plan >= 0)
    total = float(solution.total_cost)
    baseline = float(base.total) if unknown == 0 else None
    bound = solution.lower_bound
    figures = CostFigures(baseline, total, bound)
    gap = figures.gap
    skipped = set(solution.skipped_groups)
    changed = solution.assignment != problem.current_plan
    groups = {}
    for g in range(problem.n_groups):
        members = problem.group == g
        n = int(members.sum())
        g_base = float(base.per_group[g]) if base.unpriced_per_group[g] == 0 else None
        g_total = float(solution.group_cost[g])
        g_bound = None if solution.group_bound is None else _none_if_nan(solution.group_bound[g])
        g_figures = CostFigures(g_base, g_total, g_bound)
        g_gap = g_figures.gap
        groups[problem.group_name(g)] = {
            "devices": n,
            "changes": int((changed & members).sum()),
            "total_cost": g_total,
            "baseline_cost": g_base,
            "lower_bound": g_bound,
            "gap": g_gap,
            "gap_pct": None if g_gap is None else 100.0 * g_gap,
            "savings": g_figures.savings,
            "winning_strategy": solution.winning_strategy[g] if solution.winning_strategy else None,
            "winning_sequence": (
                list(solution.winning_sequence[g]) if solution.winning_sequence and solution.winning_sequence[g] else None
            ),
            "skipped": g in skipped,
            "devices_current_plan_unknown": int(base.unpriced_per_group[g]),
            "devices_current_plan_not_allowed": int((not_allowed & members).sum()),
        }
    notes = list(solution.notes)
    if problem.pool is not None:
        notes.append(
            "pools follow the pool column and may span groups: the lower bound is proven for the whole run "
            "(per pool scope), so groups have none; a group's cost counts its share of each pool's overage"
        )
    if unknown:
        notes.append(
            f"baseline_cost is null: {unknown} device(s) have no current plan, so the current cost cannot be priced"
        )
    return {
        "method": solution.method,
        "currency": offline.plans.currency,
        "charge_type": problem.charge_type,
        "billing": {
            "days_in_cycle": problem.billing.days_in_cycle,
            "days_remaining": problem.billing.days_remaining,
            "prorate": problem.billing.prorate,
        },
        "devices": problem.n_sims,
        "max_changes": solution.max_changes,
        "changes": int(changed.sum()),
        "changes_definition": "devices whose assigned plan differs from current_plan (an empty current_plan differs)",
        "total_cost": total,
        "baseline_cost": baseline,
        "lower_bound": bound,
        "gap": gap,
        "gap_pct": None if gap is None else 100.0 * gap,
        "gap_definition": "(total_cost - lower_bound) / lower_bound; null without a positive bound",
        "savings": figures.savings,
        "solve_seconds": float(solution.seconds),
        "devices_unassigned": int((solution.assignment < 0).sum()),
        "devices_not_movable": int((~problem.movable_mask).sum()),
        "devices_prorated": int((problem.factors < 1).sum()),
        "pool_scopes": None if problem.pool is None else int(problem.pool.max()) + 1 if problem.n_sims else 0,
        "skipped_groups": [problem.group_name(g) for g in solution.skipped_groups],
        "notes": notes,
        "groups": groups,
    }


def frontier_summary(fr) -> list[dict]:
    """The frontier as the summary's `frontier` list (cost-model.md), money unrounded."""
    return [
        {
            "max_changes": p.max_changes,
            "total_cost": p.total_cost,
            "lower_bound": p.lower_bound,
            "changes": p.changes,
            "gap": p.gap,
        }
        for p in fr.points
    ]


def _temp_beside(path: Path):
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    return fd, Path(tmp)


def write_outputs(offline: OfflineProblem, solution: Solution, out_path, summary_path, summary: dict | None = None) -> None:
    """Write assignments.csv and the summary to temporary files beside them, then rename both into place.

    A failure before the renames leaves neither file; the renames themselves are atomic per file.
    """
    out_path, summary_path = Path(out_path), Path(summary_path)
    summary = summary if summary is not None else build_summary(offline, solution)
    ids = np.array(offline.problem.catalogue.plan_ids + ("",), dtype=object)
    temps: list[Path] = []
    try:
        fd, tmp_out = _temp_beside(out_path)
        temps.append(tmp_out)
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["iccid", "plan_id"])
            w.writerows(zip(offline.iccids, ids[solution.assignment], strict=True))
        fd, tmp_sum = _temp_beside(summary_path)
        temps.append(tmp_sum)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(summary, fh, indent=2, allow_nan=False)
            fh.write("\n")
        os.replace(tmp_out, out_path)
        temps.remove(tmp_out)
        os.replace(tmp_sum, summary_path)
        temps.remove(tmp_sum)
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
