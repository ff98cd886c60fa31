"""Run the demo's sessions: a carrier session on the demo account, then a cross-provider session of one customer on
both demo accounts; simulators and workers as subprocesses, a bar meanwhile."""
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
from devices.demo import DEMO_PROVIDER, DEMO_SECOND_PROVIDER, DEMO_SECOND_SEED_OFFSET
from devices.models import Customer
from rateplans.models import ServiceProvider
from sessions.models import Scope

DEMO_CROSS_PROVIDER_CUSTOMER = "Northwind Freight"


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
        parser.add_argument("--second-devices", type=int, default=None,
                            help="SIMs of the second account's simulator (as given to seed_demo; default devices / 4)")

    def handle(self, *args, devices, seed, method, second_devices=None, **options):
        provider = ServiceProvider.objects.filter(name=DEMO_PROVIDER).first()
        if provider is None:
            raise CommandError("No demo account: run `manage.py seed_demo` first.")
        second = ServiceProvider.objects.filter(tenant=provider.tenant, name=DEMO_SECOND_PROVIDER).first()
        second_devices = devices // 4 if second_devices is None else second_devices
        logs = settings.VAR_DIR / "logs"
        logs.mkdir(exist_ok=True)
        with ExitStack() as stack:
            self._simulator(stack, provider, devices=devices, seed=seed, log=logs / "simulator.log")
            if second is not None:
                self._simulator(stack, second, devices=second_devices, seed=seed + DEMO_SECOND_SEED_OFFSET,
                                log=logs / "simulator-second.log")
            self.stdout.write(f"Starting {settings.Q_CLUSTER['workers']} background workers (qcluster)…")
            stack.enter_context(_process(["qcluster"], "qcluster", logs / "qcluster.log"))
            deadline = time.monotonic() + 60
            while not clusters_alive():  # optimize --wait refuses to wait for a cluster that is not up
                if time.monotonic() > deadline:
                    raise CommandError(f"The worker cluster did not report in 60 s; see {logs / 'qcluster.log'}")
                time.sleep(0.2)
            call_command("optimize", provider=provider.pk, method=method, wait=True, timeout=1800, stdout=self.stdout)
            customer = Customer.objects.filter(tenant=provider.tenant, name=DEMO_CROSS_PROVIDER_CUSTOMER).first()
            if second is not None and customer is not None:
                self.stdout.write(f"Cross-provider optimization of {customer.name} on {provider.name} and {second.name}…")
                call_command("optimize", scope=Scope.CROSS_PROVIDER, customer=customer.pk, method=method, wait=True,
                             timeout=1800, stdout=self.stdout)

    def _simulator(self, stack: ExitStack, provider, *, devices: int, seed: int, log) -> None:
        """The account's carrier simulator, started here unless one already answers at its URL."""
        url = urlsplit(provider.api_base_url)
        if _listening(url.hostname, url.port):
            self.stdout.write(f"Carrier simulator already answering at {provider.api_base_url}.")
            return
        self.stdout.write(f"Starting the carrier simulator at {provider.api_base_url} ({devices:,} SIMs, seed {seed})…")
        stack.enter_context(_process(["run_carrier_simulator", "--port", str(url.port), "--sims", str(devices),
                                      "--seed", str(seed)], "simulator", log))
        deadline = time.monotonic() + 60
        while not _listening(url.hostname, url.port):
            if time.monotonic() > deadline:
                raise CommandError(f"The simulator did not start; see {log}")
            time.sleep(0.2)
