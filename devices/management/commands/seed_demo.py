"""Create the demo tenant, its simulated Jasper account, catalogue and SIM fleet."""
import time

from django.core.management.base import BaseCommand, CommandError

from devices.demo import demo_seed


class Command(BaseCommand):
    help = "Create (or refresh) a realistic demo tenant on the carrier simulator. Idempotent."

    def add_arguments(self, parser):
        parser.add_argument("--devices", type=int, default=10_000, help="number of SIMs (default 10,000)")
        parser.add_argument("--seed", type=int, default=7, help="random seed; the simulator uses the same one")

    def handle(self, *args, devices, seed, **options):
        if devices < 0:
            raise CommandError(f"--devices must be 0 or more, got {devices}")
        started = time.monotonic()
        self.stdout.write(f"Seeding {devices:,} SIMs (seed {seed})…")
        result = demo_seed(devices=devices, seed=seed)
        self.stdout.write(self.style.SUCCESS(
            f"Tenant {result.tenant.name!r}, carrier account #{result.provider.pk} {result.provider.name!r} "
            f"({result.provider.integration}, {result.provider.api_base_url}): "
            f"{result.rate_plans} rate plans, {result.communication_plans} communication plans, "
            f"{result.devices:,} SIMs, {result.usages:,} usage rows "
            f"in {time.monotonic() - started:.1f}s."
        ))
