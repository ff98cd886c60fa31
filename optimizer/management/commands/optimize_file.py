"""optimize_file: solve an offline plans.json + devices.csv problem and write assignments.csv + a JSON summary."""
from __future__ import annotations

import sys
from contextlib import contextmanager
from time import perf_counter

from django.core.management.base import BaseCommand, CommandError

from optimizer.engine import CatalogueError, ProblemError, solve_certified, solve_legacy
from optimizer.engine.budget import frontier, solve_budgeted
from optimizer.engine.files import (
    FileFormatError,
    build_summary,
    frontier_summary,
    read_devices,
    read_plans,
    write_outputs,
)
from optimizer.engine.legacy import LEGACY_MAX_PLANS, LEGACY_MAX_SEQUENCES


class Command(BaseCommand):
    help = (
        "Find the cheapest rate plan per SIM for PLANS.json + DEVICES.csv (formats: shared/spec/cost-model.md); "
        "write ASSIGNMENTS.csv and a JSON summary. Uses no database."
    )
    # Offline by design: no system checks, so it runs on an empty, unmigrated database.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser):
        parser.add_argument("plans", help="plans.json: catalogue, billing, charge type, optional groups")
        parser.add_argument("devices", help="devices.csv: iccid,usage_mb[,current_plan][,group][,days_active][,movable][,pool]")
        parser.add_argument("--out", required=True, help="where to write assignments.csv (iccid,plan_id)")
        parser.add_argument("--summary", required=True, help="where to write the JSON summary")
        parser.add_argument("--method", choices=("certified", "legacy"), default="certified")
        parser.add_argument(
            "--max-plans",
            type=int,
            default=None,
            help=f"skip groups with more rate plans than this (default: {LEGACY_MAX_PLANS} for legacy, no limit for certified)",
        )
        parser.add_argument("--max-sequences", type=int, default=LEGACY_MAX_SEQUENCES, help="legacy rate pool sequences per group")
        parser.add_argument(
            "--frontier",
            type=int,
            default=None,
            metavar="N",
            help="add to the summary the savings-versus-changes frontier: cost and proven bound at N change budgets "
                 "from 0 to the unconstrained answer's changes (certified only)",
        )

    @contextmanager
    def _bar(self, desc: str, total: float, unit: str):
        """A tqdm bar on a terminal; elsewhere nothing (the counted log lines say what happened)."""
        stream = getattr(self.stderr, "_out", sys.stderr)
        if not (hasattr(stream, "isatty") and stream.isatty()):
            yield None
            return
        from tqdm import tqdm

        with tqdm(total=total, desc=desc, unit=unit, unit_scale=True, file=stream, leave=False) as bar:
            yield bar

    def _log(self, message: str):
        # Progress lines go to stderr like the bar, unstyled: Django paints stderr red on a terminal.
        self.stderr.write(message, style_func=lambda m: m)

    def handle(self, *args, **opts):
        method = opts["method"]
        points = opts["frontier"]
        if points is not None and points < 2:
            raise CommandError(f"--frontier needs at least 2 points, got {points}")
        if points is not None and method != "certified":
            raise CommandError("--frontier needs --method certified (its bound is the certified solver's)")
        max_plans = opts["max_plans"] if opts["max_plans"] is not None else (LEGACY_MAX_PLANS if method == "legacy" else None)
        kept = f"nothing written; {opts['out']} and {opts['summary']} untouched"
        started = perf_counter()
        try:
            plans = read_plans(opts["plans"])
            with self._bar("reading devices", 1.0, "B") as bar:

                def on_read(done, size):
                    if bar is not None:
                        bar.total = size
                        bar.n = done
                        bar.refresh()

                offline = read_devices(plans, opts["devices"], progress=on_read)
        except (FileFormatError, ProblemError, CatalogueError) as exc:
            raise CommandError(f"{exc} ({kept})") from exc
        problem = offline.problem
        budget = plans.max_changes
        if budget is not None and method != "certified":
            raise CommandError(f"objective.max_changes needs --method certified ({kept})")
        self._log(
            f"read {problem.n_sims:,} devices in {problem.n_groups} group(s), {problem.n_plans} rate plans "
            f"in {perf_counter() - started:.1f} s"
        )

        with self._bar(f"optimizing ({method})", 100.0, "%") as bar:

            def on_solve(fraction):
                if bar is not None:
                    bar.n = round(100.0 * fraction, 1)
                    bar.refresh()

            if method == "legacy":
                solution = solve_legacy(problem, max_sequences=opts["max_sequences"], max_plans=max_plans, progress=on_solve)
            else:
                solution = solve_certified(
                    problem, max_plans=max_plans, max_sequences=opts["max_sequences"], progress=on_solve
                )
        unconstrained = solution
        fr = None
        try:
            if budget is not None:
                solution = solve_budgeted(problem, budget, reference=unconstrained)
            if points is not None:
                started_fr = perf_counter()
                fr = frontier(problem, points=points, reference=unconstrained)
                self._log(f"frontier: {len(fr.points)} change budgets in {perf_counter() - started_fr:.1f} s")
        except ProblemError as exc:
            raise CommandError(f"{exc} ({kept})") from exc
        summary = build_summary(offline, solution)
        if budget is not None:
            summary["unconstrained"] = {"total_cost": float(unconstrained.total_cost),
                                        "lower_bound": unconstrained.lower_bound, "changes": unconstrained.changes}
        if fr is not None:
            summary["frontier"] = frontier_summary(fr)
        try:
            write_outputs(offline, solution, opts["out"], opts["summary"], summary)
        except OSError as exc:
            raise CommandError(f"cannot write outputs: {exc} ({kept})") from exc

        cur = plans.currency
        parts = [f"{method}: total {summary['total_cost']:,.2f} {cur}"]
        if summary["baseline_cost"] is not None:
            parts.append(f"current {summary['baseline_cost']:,.2f}, savings {summary['savings']:,.2f}")
        else:
            parts.append("current cost unknown (some current plans missing)")
        if summary["lower_bound"] is not None:
            parts.append(f"lower bound {summary['lower_bound']:,.2f}, gap {summary['gap_pct']:.4f} %")
        parts.append(f"{summary['changes']:,} of {problem.n_sims:,} devices change plan"
                     + (f" (budget {budget:,})" if budget is not None else ""))
        if summary["devices_not_movable"]:
            parts.append(f"{summary['devices_not_movable']:,} kept on their plan (movable 0)")
        parts.append(f"solved in {solution.seconds:.2f} s")
        for note in summary["notes"]:
            self._log(f"note: {note}")
        self.stdout.write("; ".join(parts))
        if fr is not None:
            base = summary["baseline_cost"]
            full = fr.points[-1]
            for p in fr.points:
                share = ""
                if base is not None and base - full.total_cost > 0:
                    share = f", {100.0 * (base - p.total_cost) / (base - full.total_cost):.1f} % of the savings"
                gap = "" if p.gap is None else f", gap {100.0 * p.gap:.3f} %"
                self.stdout.write(f"  at most {p.max_changes:,} changes: total {p.total_cost:,.2f}, "
                                  f"bound {p.lower_bound:,.2f}{gap}{share}")
        self.stdout.write(f"wrote {opts['out']} and {opts['summary']} in {perf_counter() - started:.1f} s total")
