"""The demo's epilogue: apply the last session's recommendations, end the billing cycle on the simulator (its
clock moves past the cycle's end), read the cycle's final usage and print what the recommendation actually saved."""
import datetime as dt
import time
from contextlib import ExitStack
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from devices.demo import DEMO_PROVIDER
from rateplans.models import ServiceProvider
from sessions.management.commands.demo_run import _listening, _process
from sessions.models import OptimizationSession


class Command(BaseCommand):
    help = ("Demo only: apply the demo account's last completed session, move the carrier simulator's clock past "
            "the end of its billing cycle, then read the final usage and show the realized savings.")

    def add_arguments(self, parser):
        parser.add_argument("--devices", type=int, default=10_000)
        parser.add_argument("--seed", type=int, default=7)
        parser.add_argument("--apply", action="store_true", default=True, help="apply the recommendations first")
        parser.add_argument("--no-apply", dest="apply", action="store_false")

    def handle(self, *args, devices, seed, apply, **options):
        provider = ServiceProvider.objects.filter(name=DEMO_PROVIDER).first()
        if provider is None:
            raise CommandError("No demo account: run `manage.py seed_demo` first.")
        # The carrier session (every SIM of the account), not a customer's.
        session = (OptimizationSession.objects.filter(provider=provider, scope="carrier",
                                                      status__in=("succeeded", "succeeded_with_warnings"))
                   .select_related("billing_period").order_by("-created_at").first())
        if session is None:
            raise CommandError("No completed session on the demo account: run `manage.py demo_run` first.")
        url = urlsplit(provider.api_base_url)
        logs = settings.VAR_DIR / "logs"
        logs.mkdir(exist_ok=True)
        with ExitStack() as stack:
            if _listening(url.hostname, url.port):
                raise CommandError(f"A carrier simulator already answers at {provider.api_base_url}: this demo moves "
                                   f"the simulator's clock, so it starts its own; stop that one first.")
            stack.enter_context(_process(["run_carrier_simulator", "--port", str(url.port), "--sims", str(devices),
                                          "--seed", str(seed)], "simulator", logs / "simulator.log"))
            deadline = time.monotonic() + 60
            while not _listening(url.hostname, url.port):
                if time.monotonic() > deadline:
                    raise CommandError(f"The simulator did not start; see {logs / 'simulator.log'}")
                time.sleep(0.2)
            if apply:
                call_command("apply_recommendations", session=str(session.pk), stdout=self.stdout)
            over = session.billing_period.ends_at() + dt.timedelta(hours=settings.FINAL_USAGE_DELAY_HOURS + 1)
            httpx.post(f"{provider.api_base_url.rstrip('/')}/_sim/clock", params={"at": over.isoformat()},
                       timeout=10).raise_for_status()
            self.stdout.write(f"The simulator's clock is now {over:%Y-%m-%d %H:%M %Z}: the cycle "
                              f"{session.billing_period} has ended (demo only; carrieropt acts as of that moment).")
            call_command("sync_final_usage", provider=provider.pk, period_end=session.billing_period.end_date,
                         as_of=over, stdout=self.stdout)
