"""Sync one carrier account's SIMs (and by default their usage) from the carrier's API."""
import argparse
import sys

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from devices.models import SyncStatus
from devices.services import SyncProgress, device_sync, usage_sync
from rateplans.models import ServiceProvider


class _Progress:
    """A tqdm bar on a terminal; otherwise a counted log line every ~10 % (or every 100 pages)."""

    def __init__(self, command: BaseCommand, *, tty: bool):
        self.command, self.tty = command, tty
        self.bar: tqdm | None = None
        self.kind = ""
        self.next_line = 0

    def __call__(self, event: SyncProgress) -> None:
        if event.kind != self.kind:
            self.close()
            self.kind, self.next_line = event.kind, 0
            if self.tty:
                unit = "page" if event.kind == "devices" else "SIM"
                self.bar = tqdm(total=event.total, unit=unit, desc=f"{event.kind:>7}", file=sys.stderr,
                                dynamic_ncols=True)
        if self.bar is not None:
            self.bar.n = event.done
            self.bar.set_postfix(seen=f"{event.seen:,}", retries=event.retries, refresh=False)
            self.bar.refresh()
            return
        if event.done >= self.next_line or event.done == event.total:
            total = f"/{event.total:,}" if event.total else ""
            what = "pages" if event.kind == "devices" else "SIMs"
            self.command.stdout.write(f"{event.kind}: {event.done:,}{total} {what}, {event.seen:,} SIMs seen, "
                                      f"{event.retries} retries")
            self.next_line = event.done + (max(1, event.total // 10) if event.total else 100)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class Command(BaseCommand):
    help = "Read a carrier account's SIMs into the device table (one transaction), then their cycle-to-date usage."

    def add_arguments(self, parser):
        parser.add_argument("--provider", type=int, required=True, help="carrier account (ServiceProvider) id")
        parser.add_argument("--full", action="store_true",
                            help="list every SIM and mark those the carrier no longer reports as missing")
        parser.add_argument("--usage", action=argparse.BooleanOptionalAction, default=True,
                            help="also fetch cycle-to-date usage (default: yes)")

    def handle(self, *args, provider, full, usage, **options):
        account = ServiceProvider.objects.filter(pk=provider).first()
        if account is None:
            raise CommandError(f"--provider {provider}: no carrier account with this id")
        tty = self.stdout.isatty()
        progress = _Progress(self, tty=tty)
        try:
            run = device_sync(provider=account, full=True if full else None, progress=progress)
        finally:
            progress.close()
        if run.status != SyncStatus.SUCCEEDED:
            raise CommandError(f"Device sync #{run.pk} of {account.name!r} failed after {run.pages} pages, "
                               f"{run.calls} calls ({run.retries} retries): {run.error}")
        self.stdout.write(self.style.SUCCESS(
            f"Device sync #{run.pk} ({run.kind}) of {account.name!r}: {run.pages:,} pages, {run.devices_seen:,} SIMs "
            f"seen, {run.inserted:,} added, {run.updated:,} changed, {run.missing:,} marked missing, "
            f"{run.rejected:,} rejected, {run.duplicates:,} duplicates, {run.retries} retries, "
            f"merge {run.merge_seconds:.2f}s, total {run.duration_seconds:.1f}s."))
        if run.error:
            self.stdout.write(self.style.WARNING(run.error))
        for reject in run.rejects[:5]:
            self.stdout.write(self.style.WARNING(f"  rejected {reject['iccid']} (page {reject['page']}): {reject['reason']}"))
        if run.new_communication_plans:
            self.stdout.write(f"New communication plans: {', '.join(run.new_communication_plans)}")
        if not usage:
            return
        try:
            usage_run = usage_sync(provider=account, progress=progress)
        finally:
            progress.close()
        if usage_run.status != SyncStatus.SUCCEEDED:
            raise CommandError(f"Usage sync #{usage_run.pk} of {account.name!r} failed: {usage_run.error}")
        self.stdout.write(self.style.SUCCESS(
            f"Usage sync #{usage_run.pk} of {account.name!r}: {usage_run.devices_seen:,} SIMs asked "
            f"({usage_run.skipped:,} skipped by status), {usage_run.inserted:,} new and {usage_run.updated:,} updated "
            f"usage rows, {usage_run.rejected:,} rejected, {usage_run.retries} retries, "
            f"{usage_run.duration_seconds:.1f}s."))
