"""Push a completed session's recommended rate plans to the carrier, with a progress bar on a terminal."""
import sys
import time
import uuid

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from carrieropt.actors import command_actor
from carrieropt.errors import ApplicationError
from pushes.batches import push_batch_run
from pushes.counts import PushCounts, push_counts
from pushes.models import BatchStatus, PushDecision, PushStatus, RatePlanPush
from pushes.recommendations import session_apply
from pushes.verify import push_verify_run
from sessions.models import OptimizationSession


class _Progress:
    """A tqdm bar on a terminal; otherwise a counted line every ~10 % of the changes."""

    def __init__(self, command: BaseCommand, *, total: int, tty: bool):
        self.command, self.total, self.next_line = command, total, 0
        self.bar = tqdm(total=total, unit="SIM", desc="applying", file=sys.stderr, dynamic_ncols=True) if tty else None

    def __call__(self, counts: PushCounts) -> None:
        settled = counts.total - counts.remaining
        if self.bar is not None:
            self.bar.n = settled
            self.bar.set_postfix(applied=counts.applied, failed=counts.failed + counts.rejected,
                                 skipped=counts.discrepancy, refresh=False)
            self.bar.refresh()
        elif settled >= self.next_line:
            self.command.stdout.write(f"{settled:,}/{self.total:,} settled: {counts.applied:,} applied, "
                                      f"{counts.rejected:,} refused, {counts.discrepancy:,} skipped, "
                                      f"{counts.failed:,} failed")
            self.next_line = settled + max(1, self.total // 10)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class Command(BaseCommand):
    help = ("Apply a completed session's recommendations: Go/No-Go, then send the changes in batches (here, or on "
            "any running qcluster worker) and verify them on the carrier.")

    def add_arguments(self, parser):
        parser.add_argument("--session", required=True, help="session id (or GUID)")
        parser.add_argument("--no-wait", action="store_true",
                            help="queue the push and return; qcluster workers send it")
        parser.add_argument("--timeout", type=int, default=6 * 3600, help="seconds to wait at most")

    def handle(self, *args, session, no_wait, timeout, **options):
        found = _session(session)
        try:
            push = session_apply(session=found, trigger="command", applied_by=command_actor())
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(f"Rate plan update #{push.pk} of session {found.pk} ({push.total:,} changes). "
                          f"{push.decision_reason}")
        if push.decision == PushDecision.NO_GO:
            raise CommandError(f"No-Go: nothing was sent (an e-mail says why). Push #{push.pk}.")
        if no_wait or not push.is_active:
            return
        push = self._follow(push, timeout)
        counts = push_counts(push_id=push.pk)
        summary = (f"Rate plan update #{push.pk} {push.get_status_display().lower()}: {counts.applied:,} applied "
                   f"({counts.verified:,} verified), {counts.discrepancy:,} skipped as discrepancies, "
                   f"{counts.rejected:,} refused, {counts.failed:,} failed"
                   + (f"; {push.measured_rate:,.1f} SIMs/min." if push.measured_rate else "."))
        if push.status == PushStatus.FAILED:
            raise CommandError(f"{summary} Stopped: {push.error}")
        self.stdout.write(self.style.SUCCESS(summary) if push.status == PushStatus.SUCCEEDED else self.style.WARNING(summary))
        for change in push.changes.exclude(status="applied", verified=True).order_by("iccid")[:10]:
            self.stdout.write(self.style.WARNING(f"  {change.iccid} {change.from_plan_code} -> {change.to_plan_code}: "
                                                 f"{change.status}. {change.error}"))

    def _follow(self, push: RatePlanPush, timeout: int) -> RatePlanPush:
        """Work on the push here (claims make that safe beside workers) and show its progress until it ends."""
        progress = _Progress(self, total=push.total, tty=sys.stderr.isatty())
        deadline = time.monotonic() + timeout
        try:
            while True:
                push.refresh_from_db()
                if not push.is_active:
                    return push
                if time.monotonic() > deadline:
                    raise CommandError(f"Rate plan update #{push.pk} still {push.status} after {timeout}s; it goes on "
                                       f"on the qcluster workers (see /api/pushes/{push.pk}/).")
                outcome = "not_ours"
                if push.status == PushStatus.RUNNING:
                    batch = push.batches.filter(status=BatchStatus.PENDING).order_by("number").first()
                    if batch is not None:
                        outcome = push_batch_run(batch_id=batch.pk, progress=progress)
                else:
                    outcome = push_verify_run(push_id=push.pk)
                progress(push_counts(push_id=push.pk))
                if outcome == "not_ours":
                    time.sleep(0.5)  # a worker has it: just watch
        finally:
            progress.close()


def _session(value: str) -> OptimizationSession:
    try:
        lookup = {"guid": uuid.UUID(value)} if not value.isdigit() else {"pk": int(value)}
    except ValueError:
        raise CommandError(f"--session {value!r}: give a session id or GUID") from None
    found = OptimizationSession.objects.filter(**lookup).first()
    if found is None:
        raise CommandError(f"--session {value}: no optimization session with this id")
    return found
