"""optimize_file: solve an offline plans.json + devices.csv problem and write assignments.csv + a JSON summary."""
from __future__ import annotations

import sys
from contextlib import contextmanager
from time import perf_counter

from django.core.management.base import BaseCommand, CommandError

from optimizer.engine import CatalogueError, ProblemError, solve_certified, solve_legacy
from optimizer.engine.files import FileFormatError, build_summary, read_devices, read_plans, write_outputs
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
        summary = build_summary(offline, solution)
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
        parts.append(f"{summary['changes']:,} of {problem.n_sims:,} devices change plan")
        if summary["devices_not_movable"]:
            parts.append(f"{summary['devices_not_movable']:,} kept on their plan (movable 0)")
        parts.append(f"solved in {solution.seconds:.2f} s")
        for note in summary["notes"]:
            self._log(f"note: {note}")
        self.stdout.write("; ".join(parts))
        self.stdout.write(f"wrote {opts['out']} and {opts['summary']} in {perf_counter() - started:.1f} s total")
