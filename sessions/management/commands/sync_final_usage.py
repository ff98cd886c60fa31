"""Read the final usage of an ended billing cycle from the carrier and print the realized savings of its sessions."""
import datetime as dt
from decimal import Decimal

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from devices.final_usage import final_usage_sync, last_ended_period
from devices.models import SyncStatus
from optimizer.models import RunRealized
from rateplans.models import ServiceProvider
from rateplans.services import billing_period_ending
from sessions.models import OptimizationSession


def _moment(value: str) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise CommandError(f"--as-of {value!r} is not an ISO 8601 moment") from None
    if moment.tzinfo is None:
        raise CommandError(f"--as-of {value!r} has no zone (e.g. 2027-01-02T12:00:00+00:00)")
    return moment


class Command(BaseCommand):
    help = ("Read the final usage of an ended billing cycle (default: the last one) through the carrier's calls that "
            "take a cycle start date, then print what each of its sessions' recommendations actually saved.")

    def add_arguments(self, parser):
        parser.add_argument("--provider", type=int, required=True, help="carrier account (ServiceProvider) id")
        parser.add_argument("--period-end", type=dt.date.fromisoformat, default=None,
                            help="last day of the cycle (YYYY-MM-DD); default: the last ended cycle")
        parser.add_argument("--as-of", type=_moment, default=None,
                            help="the moment to act at (ISO 8601 with zone; default now): for a simulator whose "
                                 "clock was moved past the cycle's end (make demo)")

    def handle(self, *args, provider, period_end, as_of, **options):
        account = ServiceProvider.objects.filter(pk=provider).first()
        if account is None:
            raise CommandError(f"--provider {provider}: no carrier account with this id")
        if isinstance(as_of, str):  # call_command passes keyword options as given
            as_of = _moment(as_of)
        if isinstance(period_end, str):
            period_end = dt.date.fromisoformat(period_end)
        now = as_of or timezone.now()
        period = (billing_period_ending(provider=account, end_date=period_end) if period_end
                  else last_ended_period(provider=account, now=now))
        run = final_usage_sync(provider=account, period=period, now=now)
        if run.status != SyncStatus.SUCCEEDED:
            raise CommandError(f"Final usage sync #{run.pk} of {account.name!r} for {period} failed: {run.error}")
        self.stdout.write(self.style.SUCCESS(
            f"Final usage of {period} for {account.name!r} (sync #{run.pk}): {run.devices_seen - run.rejected:,} SIMs "
            f"read in {run.calls:,} carrier calls ({run.pages:,} pages of usage by rate plan), {run.rejected:,} "
            f"without final usage, {run.duration_seconds:.1f}s."))
        if run.error:
            self.stdout.write(self.style.WARNING(run.error))
        sessions = OptimizationSession.objects.filter(provider=account, billing_period=period).select_related("provider").order_by("created_at")
        realized = {r.run_id: r for r in RunRealized.objects.filter(run__in=[s.run_id for s in sessions])}
        for session in sessions:
            r = realized.get(session.run_id)
            if r is None:
                continue
            ratio = r.figures.savings_ratio
            error = r.projection_error
            self.stdout.write(
                f"Session {session.guid}: realized savings {r.figures.savings:,.2f}"
                f"{f' ({ratio * 100:.1f} %)' if ratio is not None else ''} on final usage (plans at the session "
                f"{r.cost_before:,.2f}, at the cycle's end {r.cost_after:,.2f}); projected for the same SIMs "
                f"{r.projected_savings:,.2f}; recommended changes in place {r.changes_followed:,} of "
                f"{r.recommended_changes:,}; projection error {f'{error * 100:+.1f} %' if error is not None else '-'} "
                f"({r.projected_mb:,.0f} MB projected, {r.final_mb:,.0f} MB final); {r.priced:,} SIMs priced, "
                f"{r.missing:,} missing.{_when(session, period)}")
            for g in r.groups:
                pe = g["projection_error"]
                self.stdout.write(f"  {g['name']}: {g['priced']:,} SIMs, projection error "
                                  f"{f'{pe * 100:+.1f} %' if pe is not None else '-'}, realized {Decimal(g['savings']):,.2f} "
                                  f"(projected {Decimal(g['projected_savings']):,.2f})")


def _when(session, period) -> str:
    """On which day of its cycle the session ran: a projection made early scales a few days' usage to the cycle."""
    if session.started_at is None:
        return ""
    day = (session.started_at.astimezone(session.provider.tz).date() - period.start_date).days + 1
    text = f" It ran on day {day} of the cycle's {period.days_in_cycle}"
    if day <= period.days_in_cycle - settings.OPTIMIZATION_WINDOW_DAYS:
        return (f"{text}, before the optimization window (its last {settings.OPTIMIZATION_WINDOW_DAYS} days): "
                f"its projection scaled the usage of the cycle's first {day} day(s) to the whole cycle.")
    return f"{text}, inside the optimization window."
