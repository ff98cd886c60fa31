"""Create the demo tenant, its simulated Jasper accounts, catalogues and SIM fleets."""
import time

from django.core.management.base import BaseCommand, CommandError

from devices.demo import DEMO_SECOND_SEED_OFFSET, demo_seed


class Command(BaseCommand):
    help = "Create (or refresh) a realistic demo tenant on the carrier simulator. Idempotent."

    def add_arguments(self, parser):
        parser.add_argument("--devices", type=int, default=10_000, help="number of SIMs (default 10,000)")
        parser.add_argument("--seed", type=int, default=7, help="random seed; the simulator uses the same one")
        parser.add_argument("--second-devices", type=int, default=None,
                            help="SIMs of the second account (cross-provider), fleet seed + 1; default devices / 4, "
                                 "0 for none")

    def handle(self, *args, devices, seed, second_devices=None, **options):
        if devices < 0:
            raise CommandError(f"--devices must be 0 or more, got {devices}")
        second_devices = devices // 4 if second_devices is None else second_devices
        if second_devices < 0:
            raise CommandError(f"--second-devices must be 0 or more, got {second_devices}")
        started = time.monotonic()
        self.stdout.write(f"Seeding {devices:,} SIMs (seed {seed}) and {second_devices:,} on the second account…")
        result = demo_seed(devices=devices, seed=seed, second_devices=second_devices)
        self.stdout.write(self.style.SUCCESS(
            f"Tenant {result.tenant.name!r}, carrier account #{result.provider.pk} {result.provider.name!r} "
            f"({result.provider.integration}, {result.provider.api_base_url}): "
            f"{result.rate_plans} rate plans, {result.communication_plans} communication plans, "
            f"{result.devices:,} SIMs, {result.usages:,} usage rows "
            f"in {time.monotonic() - started:.1f}s."
        ))
        if result.second_provider is not None:
            second = result.second_provider
            self.stdout.write(self.style.SUCCESS(
                f"Second carrier account #{second.pk} {second.name!r} ({second.api_base_url}): "
                f"{result.second_devices:,} SIMs (fleet seed {seed + DEMO_SECOND_SEED_OFFSET}); cross-provider "
                f"optimization {'on' if result.tenant.cross_provider_enabled else 'off'} for the tenant."))
