"""Start an optimization session for a carrier account; optionally wait for it with a progress bar."""
import argparse
import sys
import time
from decimal import Decimal

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from carrieropt.actors import command_actor
from carrieropt.errors import ApplicationError
from carrieropt.money import cents
from carrieropt.workers import NO_CLUSTER, clusters_alive
from devices.models import Customer
from optimizer.engine.figures import CostFigures
from rateplans.models import ServiceProvider
from sessions.crossprovider import session_accounts
from sessions.models import ChargeType, Method, OptimizationSession, Scope, Trigger
from sessions.reports import report_location
from sessions.services import session_start

CLUSTER_CHECK_SECONDS = 20  # while waiting: a cluster that dies is noticed within this (its status expires in 15 s)


class Command(BaseCommand):
    help = "Start a session now (manual starts skip the window, never the one-active rule)."

    def add_arguments(self, parser):
        parser.add_argument("--provider", type=int, help="carrier account id (not with --scope cross_provider)")
        parser.add_argument("--scope", choices=Scope.values, default=Scope.CARRIER,
                            help="carrier (every SIM of the account), customer (--customer's SIMs on it) or "
                                 "cross_provider (--customer's SIMs on each account of the tenant)")
        parser.add_argument("--customer", type=int, help="customer id (scope customer and cross_provider)")
        parser.add_argument("--method", choices=Method.values, help="default: the account's default_method")
        parser.add_argument("--charge-type", choices=ChargeType.values,
                            help="what the costs count (default: the account's default_charge_type)")
        parser.add_argument("--must-beat-current", action=argparse.BooleanOptionalAction, default=None,
                            help="keep a group on its current plans unless the answer is strictly cheaper "
                                 "(default: the account's default_must_beat_current)")
        parser.add_argument("--max-changes", type=int, default=None, metavar="K",
                            help="change budget: applying pushes the answer with at most K SIMs changing plan "
                                 "(default: the account's default_max_changes)")
        parser.add_argument("--no-sync", action="store_true", help="optimize the stored SIMs and usage without syncing")
        parser.add_argument("--wait", action="store_true", help="wait for the session to end, showing progress")
        parser.add_argument("--timeout", type=int, default=3600, help="seconds to wait at most (with --wait)")

    def handle(self, *args, provider=None, method=None, charge_type=None, must_beat_current=None, no_sync=False,
               wait=False, timeout=3600, max_changes=None, scope=Scope.CARRIER, customer=None, **options):
        account = None
        if provider is not None:
            account = ServiceProvider.objects.filter(pk=provider).first()
            if account is None:
                raise CommandError(f"--provider {provider}: no carrier account with that id")
        buyer = None
        if customer is not None:
            buyer = Customer.objects.select_related("tenant").filter(pk=customer).first()
            if buyer is None:
                raise CommandError(f"--customer {customer}: no customer with that id")
        try:
            session = session_start(provider=account, trigger=Trigger.MANUAL, method=method, charge_type=charge_type,
                                    must_beat_current=must_beat_current, sync_devices=not no_sync,
                                    started_by=command_actor(), max_changes=max_changes, scope=scope, customer=buyer)
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        what = session.provider if buyer is None else f"{buyer.name} on " + ", ".join(
            m.provider.name for m in session_accounts(session))
        self.stdout.write(f"Session {session.pk} ({session.guid}) started for {what}: {_options(session)}.")
        if not clusters_alive():
            # Said at once: without a cluster nothing moves, and --wait would only find out at its timeout.
            if wait:
                raise CommandError(f"Session {session.pk}: {NO_CLUSTER}.")
            self.stderr.write(self.style.WARNING(f"Warning: {NO_CLUSTER}."))
            return
        if not wait:
            return
        session = self._wait(session.pk, timeout)
        if not session.is_complete:
            raise CommandError(f"Session {session.pk} ended {session.status}: {session.error}")
        if session.warnings:
            self.stdout.write(self.style.WARNING(f"{_summary(session)}\nWarning: {session.warnings}"))
        else:
            self.stdout.write(self.style.SUCCESS(_summary(session)))
        if session.comparison:
            self.stdout.write(comparison_text(session))

    def _wait(self, session_id, timeout):
        deadline = time.monotonic() + timeout
        next_check = time.monotonic() + CLUSTER_CHECK_SECONDS
        with tqdm(total=100, unit="%", disable=not sys.stderr.isatty(), desc="optimizing") as bar:
            last = -1
            while True:
                session = OptimizationSession.objects.get(pk=session_id)
                if session.progress != last:
                    bar.update(session.progress - bar.n)
                    bar.set_postfix_str(session.stage)
                    if not sys.stderr.isatty():
                        self.stdout.write(f"  {session.progress:3d}%  {session.stage}")
                    last = session.progress
                if not session.is_active:
                    return session
                if time.monotonic() > next_check:
                    next_check = time.monotonic() + CLUSTER_CHECK_SECONDS
                    if not clusters_alive():
                        raise CommandError(f"Session {session_id} is {session.stage} at {session.progress} % and the "
                                           f"worker cluster stopped: {NO_CLUSTER}.")
                if time.monotonic() > deadline:
                    raise CommandError(f"Session {session_id} still {session.stage} after {timeout}s; is a worker running "
                                       "(`manage.py qcluster`)?")
                time.sleep(0.5)


def _options(session) -> str:
    beat = "must beat current plans" if session.must_beat_current else "current plans compete only when allowed"
    return f"method {session.method}, charge type {session.charge_type}, {beat}"


def comparison_text(session) -> str:
    """A cross-provider session's accounts side by side, and the whole fleet on each account's catalogue."""
    c = session.comparison
    lines = [f"Cross-provider: {session.customer.name}, {c['total']['sims']:,} SIMs on {len(c['accounts'])} accounts "
             f"(each optimized on its own catalogue; the fleet column prices all {c['fleet_sims_priced']:,} SIMs with "
             f"usage on each catalogue, a comparison only: no SIM moves between carriers)",
             f"  {'account':<34} {'SIMs':>7} {'cost before':>12} {'cost after':>12} {'savings':>10} {'changes':>8} "
             f"{'whole fleet':>12}"]

    def money(value):
        return "-" if value is None else f"{cents(Decimal(value)):,.2f}"

    for a in c["accounts"]:
        lines.append(f"  {a['provider_name'][:34]:<34} {a['sims']:>7,} {money(a['current_cost']):>12} "
                     f"{money(a['optimized_cost']):>12} {money(a['savings']):>10} {a['changes']:>8,} "
                     f"{money(a['fleet_cost']):>12}{'  <- cheapest for the fleet' if a['cheapest_for_fleet'] else ''}")
    t = c["total"]
    lines.append(f"  {'total':<34} {t['sims']:>7,} {money(t['current_cost']):>12} {money(t['optimized_cost']):>12} "
                 f"{money(t['savings']):>10} {t['changes']:>8,}")
    return "\n".join(lines)


def _summary(session) -> str:
    lines = [f"Session {session.pk} complete: {session.device_count:,} billable SIMs ({_options(session)})."]
    optimized = cents(session.optimized_cost)
    if session.current_cost is not None:
        current = cents(session.current_cost)
        lines.append(f"  current cost      {current:>14,.2f}")
    lines.append(f"  optimized cost    {optimized:>14,.2f}")
    if session.current_cost is not None:
        # From the displayed figures, so the three lines add up on screen.
        shown = CostFigures(current, optimized)
        pct = 100 * shown.savings_ratio if shown.savings_ratio is not None else 0
        lines.append(f"  savings           {shown.savings:>14,.2f}  ({pct:.1f} %)")
    if session.lower_bound is not None:
        gap = session.figures.gap
        within = f"  (optimized is within {100 * gap:.3f} % of it)" if gap is not None else ""
        lines.append(f"  lower bound       {cents(session.lower_bound):>14,.2f}{within}")
    if session.report_path:
        lines.append(f"  report                 {report_location(session.report_path)}")
    return "\n".join(lines)
