"""The verification of a push: every SIM it changed (or may have changed) is read back from the carrier."""
from __future__ import annotations

import datetime as dt
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from carrieropt.tasks import enqueue_on_commit
from carriers import CarrierClient, CarrierError
from devices.models import Device
from pushes.batches import device_show_plan
from pushes.clients import carrier_clients, read_plan
from pushes.lifecycle import VERIFY_TASK, push_finish
from pushes.models import ChangeStatus, PushStatus, RatePlanChange, RatePlanPush
from pushes.tuning import PushTuning, worker_name
from rateplans.models import RatePlan


def _read_many(client: CarrierClient, iccids: Iterable[str], *, concurrency: int,
               tick: Callable[[], bool]) -> dict[str, str | CarrierError] | None:
    """Read the plan of every ICCID; None when `tick` (called at least every few seconds) says to stop."""
    results: dict[str, str | CarrierError] = {}
    todo = deque(iccids)
    in_flight: dict[Future, str] = {}
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="push-verify") as pool:
        while todo or in_flight:
            while todo and len(in_flight) < 2 * concurrency:
                iccid = todo.popleft()
                in_flight[pool.submit(read_plan, client, iccid)] = iccid
            done, _ = wait(in_flight, timeout=1, return_when=FIRST_COMPLETED)
            for future in done:
                iccid = in_flight.pop(future)
                try:
                    results[iccid] = future.result() or ""
                except CarrierError as exc:
                    results[iccid] = exc
            if not tick():
                for future in in_flight:
                    future.cancel()
                return None
    return results


def push_verify_run(*, push_id: int, worker: str | None = None) -> str:
    """Read back every SIM the push changed (or may have changed); re-read mismatches once after a delay.

    A change that failed after a send but shows the new plan is counted applied;
    an applied one that does not show it is a verification mismatch, e-mailed.
    """
    push = RatePlanPush.objects.select_related("provider").filter(pk=push_id).first()
    if push is None or push.status != PushStatus.VERIFYING:
        return "not_ours"
    tuning, claimed_by, now = PushTuning.of(push), worker or worker_name(), timezone.now()
    lease = dt.timedelta(seconds=tuning.lease_seconds)
    claimed = (RatePlanPush.objects.filter(pk=push_id, status=PushStatus.VERIFYING)
               .filter(Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now))
               .update(claimed_by=claimed_by, lease_expires_at=now + lease, verify_started_at=now))
    if not claimed:
        return "not_ours"
    started = time.monotonic()
    renew_at = [started + tuning.lease_seconds / 4]

    def tick() -> bool:
        """Keep the lease while reading; False when out of time or the lease went to another worker."""
        if time.monotonic() - started > tuning.run_seconds:
            return False
        if time.monotonic() < renew_at[0]:
            return True
        renew_at[0] = time.monotonic() + tuning.lease_seconds / 4
        return RatePlanPush.objects.filter(pk=push_id, status=PushStatus.VERIFYING, claimed_by=claimed_by).update(
            lease_expires_at=timezone.now() + lease) == 1

    plan_ids = dict(RatePlan.objects.filter(provider=push.provider).values_list("code", "pk"))
    sent = Q(status=ChangeStatus.APPLIED) | Q(status=ChangeStatus.FAILED, sends__gt=0)
    reader, writer = carrier_clients(push.provider, tuning)
    writer.close()  # verification only reads
    try:
        for reads, pause in ((0, 0.0), (1, tuning.verify_delay)):
            targets = list(RatePlanChange.objects.filter(sent, push=push, verify_reads=reads)
                           .exclude(verified=True).order_by("iccid"))
            if not targets:
                continue
            if pause and not _sleep(pause, tick):
                return _verify_release(push_id, claimed_by)
            results = _read_many(reader, [c.iccid for c in targets], concurrency=push.provider.max_concurrency,
                                 tick=tick)
            if results is None:
                return _verify_release(push_id, claimed_by)
            _verify_record(targets, results, plan_ids=plan_ids, final=reads == 1)
    finally:
        reader.close()
    push_finish(push_id=push_id, claimed_by=claimed_by)
    return "done"


def _sleep(seconds: float, tick: Callable[[], bool]) -> bool:
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(left, 5.0))
        if not tick():
            return False
    return True


def _verify_release(push_id: int, claimed_by: str) -> str:
    # Out of time (or lease lost): give the verification back; reads already recorded are not repeated.
    with transaction.atomic():
        if RatePlanPush.objects.filter(pk=push_id, status=PushStatus.VERIFYING, claimed_by=claimed_by).update(
                claimed_by="", lease_expires_at=None):
            enqueue_on_commit(VERIFY_TASK, push_id)
    return "yield"


def _verify_record(targets: list[RatePlanChange], results: dict[str, str | CarrierError], *,
                   plan_ids: dict[str, int], final: bool) -> None:
    now = timezone.now()
    with transaction.atomic():
        for change in targets:
            answer = results.get(change.iccid)
            change.verify_reads += 1
            if isinstance(answer, CarrierError) or answer is None:
                change.verified = None
                change.verified_plan = ""
                if final:
                    change.error = (change.error + " " if change.error else "") + f"Verification read failed: {answer}"
                continue
            change.verified_plan = answer
            change.verified = answer == change.to_plan_code
            if change.verified and change.status == ChangeStatus.FAILED:
                change.status = ChangeStatus.APPLIED
                change.error = f"{change.error} The verification read shows the new plan: a send landed.".strip()
                change.finished_at = now
                Device.objects.filter(pk=change.device_id).update(rate_plan_id=change.to_plan_id,
                                                                  rate_plan_code=change.to_plan_code)
            elif not change.verified and final and change.status == ChangeStatus.APPLIED:
                device_show_plan(change.device_id, answer, plan_ids)
        RatePlanChange.objects.bulk_update(
            targets, ["verify_reads", "verified", "verified_plan", "status", "error", "finished_at"], batch_size=500)
