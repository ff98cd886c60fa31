"""Serve the Control Center carrier simulator on loopback until interrupted."""
import argparse
import signal

from django.core.management.base import BaseCommand, CommandError

from carriers.simulator import Faults, SimulatedCarrier, SimulatorServer
from carriers.simulator import fleet as demo_fleet


class Command(BaseCommand):
    help = ("Serve a simulated Jasper / Control Center REST API (v1) on 127.0.0.1 with the demo fleet "
            "(the same SIMs as `seed_demo --devices N --seed S`). Ctrl-C stops it.")

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8765, help="TCP port on 127.0.0.1 (0 picks a free one)")
        parser.add_argument("--sims", type=int, default=10_000, help="number of SIMs (default 10,000)")
        parser.add_argument("--seed", type=int, default=7, help="fleet seed; use the one given to seed_demo")
        parser.add_argument("--username", default=demo_fleet.DEMO_USERNAME)
        parser.add_argument("--api-key", default=demo_fleet.DEMO_API_KEY)
        parser.add_argument("--error-rate", type=float, default=0.0,
                            help="share of API calls answered 500, throttled or left to time out (0..1)")
        parser.add_argument("--fault-burst", type=int, default=2,
                            help="at most this many injected faults in a row (0 = no cap)")
        parser.add_argument("--hang-seconds", type=float, default=5.0, help="how long a 'timeout' fault hangs")
        parser.add_argument("--latency-ms", type=float, default=0.0, help="added to every API call")
        parser.add_argument("--malformed-page", type=int, default=None, help="answer this device-list page with broken JSON")
        parser.add_argument("--duplicate-across-pages", action="store_true",
                            help="repeat the last SIM of each page first on the next page")
        parser.add_argument("--churn", type=int, default=0, help="SIMs changed after each device-list page served")
        parser.add_argument("--rate-limit", type=float, default=None,
                            help="calls per account in each one-second window; throttled beyond")
        parser.add_argument("--throttle-status", type=int, choices=(400, 429), default=400,
                            help="answer throttling as 400 + errorCode 40000029 (default, as Cisco's answers are "
                                 "reported) or as 429 (+ errorCode 40000029, Retry-After: 1)")
        parser.add_argument("--max-in-flight", type=int, default=None,
                            help="refuse (as throttled) a call beyond this many in flight for the account")
        parser.add_argument("--modified-since-max-days", type=int, default=None,
                            help="unconfirmed limit: refuse a modifiedSince older than this many days (10000003)")
        parser.add_argument("--no-access", default="",
                            help="comma-separated functions the API user's role may not call (10000030): rateplans,usages")
        parser.add_argument("--usage-failures", action=argparse.BooleanOptionalAction, default=True,
                            help="the fleet's few SIMs without usage records fail their usage call (default: on)")

    def handle(self, *args, port, sims, seed, username, api_key, error_rate, fault_burst, hang_seconds, latency_ms,
               malformed_page, duplicate_across_pages, churn, rate_limit, throttle_status, max_in_flight,
               modified_since_max_days, no_access, usage_failures, **options):
        if not 0 <= port <= 65535:
            raise CommandError(f"--port must be 0..65535, got {port}")
        if sims < 0:
            raise CommandError(f"--sims must be 0 or more, got {sims}")
        try:
            faults = Faults(error_rate=error_rate, fault_burst=fault_burst, hang_seconds=hang_seconds,
                            latency_ms=latency_ms, malformed_page=malformed_page,
                            duplicate_across_pages=duplicate_across_pages, churn=churn, rate_limit=rate_limit,
                            throttle_status=throttle_status, max_in_flight=max_in_flight,
                            modified_since_max_days=modified_since_max_days,
                            no_access=tuple(n.strip() for n in no_access.split(",") if n.strip()))
        except ValueError as exc:
            raise CommandError(f"--error-rate: {exc}") from None
        carrier = SimulatedCarrier(sims=sims, seed=seed, username=username, api_key=api_key, faults=faults,
                                   usage_failures=usage_failures)
        try:
            server = SimulatorServer(carrier, port=port)
        except OSError as exc:
            raise CommandError(f"--port {port}: cannot listen on 127.0.0.1:{port} ({exc.strerror})") from None
        self.stdout.write(f"Carrier simulator: {sims:,} SIMs (seed {seed}) on {server.url}/rws/api/v1 "
                          f"as user {username!r}; {len(carrier.usage_unavailable):,} without usage records; "
                          f"test controls under {server.url}/_sim/. Ctrl-C to stop.")
        self.stdout.flush()
        # `terminate()` from a parent (demo_run, the benchmark) stops it as cleanly as Ctrl-C.
        signal.signal(signal.SIGTERM, _interrupt)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.stop()
            self.stdout.write(f"Stopped after {sum(carrier.counts.values()):,} API calls.")


def _interrupt(signum, frame):
    raise KeyboardInterrupt
