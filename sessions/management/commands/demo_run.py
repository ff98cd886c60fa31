"""Run one whole session on the demo account: simulator and workers as subprocesses, a bar meanwhile."""
import os
import socket
import subprocess
import sys
import time
from contextlib import ExitStack, contextmanager
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from carrieropt.processes import process_stop
from carrieropt.workers import clusters_alive
from devices.demo import DEMO_PROVIDER
from rateplans.models import ServiceProvider


def _listening(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=0.5).close()
        return True
    except OSError:
        return False


@contextmanager
def _process(args: list[str], name: str, log_path):
    log = open(log_path, "ab")  # noqa: SIM115 — closed below, after the process ends
    proc = subprocess.Popen([sys.executable, "manage.py", *args], stdout=log, stderr=subprocess.STDOUT,  # noqa: S603
                            start_new_session=True, env=os.environ.copy())
    try:
        yield proc
    finally:
        process_stop(proc)
        log.close()


class Command(BaseCommand):
    help = "Start the carrier simulator and a worker cluster, run a session on the demo account, print the result."

    def add_arguments(self, parser):
        parser.add_argument("--devices", type=int, default=10_000)
        parser.add_argument("--seed", type=int, default=7)
        parser.add_argument("--method", default="certified", choices=["certified", "legacy"])

    def handle(self, *args, devices, seed, method, **options):
        provider = ServiceProvider.objects.filter(name=DEMO_PROVIDER).first()
        if provider is None:
            raise CommandError("No demo account: run `manage.py seed_demo` first.")
        url = urlsplit(provider.api_base_url)
        logs = settings.VAR_DIR / "logs"
        logs.mkdir(exist_ok=True)
        with ExitStack() as stack:
            if _listening(url.hostname, url.port):
                self.stdout.write(f"Carrier simulator already answering at {provider.api_base_url}.")
            else:
                self.stdout.write(f"Starting the carrier simulator at {provider.api_base_url} ({devices:,} SIMs, seed {seed})…")
                stack.enter_context(_process(["run_carrier_simulator", "--port", str(url.port), "--sims", str(devices),
                                              "--seed", str(seed)], "simulator", logs / "simulator.log"))
                deadline = time.monotonic() + 60
                while not _listening(url.hostname, url.port):
                    if time.monotonic() > deadline:
                        raise CommandError(f"The simulator did not start; see {logs / 'simulator.log'}")
                    time.sleep(0.2)
            self.stdout.write(f"Starting {settings.Q_CLUSTER['workers']} background workers (qcluster)…")
            stack.enter_context(_process(["qcluster"], "qcluster", logs / "qcluster.log"))
            deadline = time.monotonic() + 60
            while not clusters_alive():  # optimize --wait refuses to wait for a cluster that is not up
                if time.monotonic() > deadline:
                    raise CommandError(f"The worker cluster did not report in 60 s; see {logs / 'qcluster.log'}")
                time.sleep(0.2)
            call_command("optimize", provider=provider.pk, method=method, wait=True, timeout=1800, stdout=self.stdout)
