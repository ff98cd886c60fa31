"""Usage coverage of a session: SIMs without usage of the cycle are never priced as 0 MB, never changed, listed
everywhere, and a session short of MIN_USAGE_COVERAGE ends with warnings and is never applied automatically."""
import datetime as dt
import random
from decimal import Decimal

import openpyxl
import pytest
from django.core import mail
from django.db.models import Sum
from django.utils import timezone

from carriers.simulator import Faults
from devices import services as device_services
from devices.models import Device, DeviceUsage, SyncRun
from optimizer.models import DeviceAssignment
from optimizer.selectors import days_active
from pushes.models import RatePlanPush
from rateplans.models import BillingPeriod
from sessions.models import OptimizationSession
from sessions.pipeline import COVERAGE_SUBJECT
from sessions.reports import report_open
from sessions.services import session_start
from tests.pushes.helpers import api_changes, fleet
from tests.report_storage import use_report_folder

pytestmark = pytest.mark.django_db(transaction=True)  # the automatic push is queued on commit


def delete_usage(provider, share: float, seed: int = 5) -> list[str]:
    """Delete the usage rows of `share` of the account's active SIMs that have one; their ICCIDs, sorted."""
    rows = list(DeviceUsage.objects.filter(device__provider=provider, device__status="ACTIVATED")
                .values_list("pk", "device__iccid"))
    chosen = random.Random(seed).sample(rows, round(share * len(rows)))
    DeviceUsage.objects.filter(pk__in=[pk for pk, _ in chosen]).delete()
    return sorted(iccid for _, iccid in chosen)


def fleet_without_usage(provider) -> list[str]:
    """The demo fleet's active SIMs the carrier has no usage for (seed_demo stores none for them)."""
    return sorted(Device.objects.filter(provider=provider, status="ACTIVATED", usages__isnull=True)
                  .values_list("iccid", flat=True))


def run(provider, **kwargs):
    session = session_start(provider=provider, sync_devices=False, **kwargs)
    return OptimizationSession.objects.get(pk=session.pk)


def test_a_tenth_of_usage_deleted_keeps_those_sims_lists_them_warns_and_is_not_applied(
        inline_tasks, carrier_simulator_factory, settings, tmp_path, api, tenant_a):
    """The hostile probe of issue 12: usage rows deleted for 10 % of the SIMs of an auto-apply account."""
    use_report_folder(settings, tmp_path)
    server = carrier_simulator_factory(sims=400, seed=41)
    provider = fleet(server, devices=400, seed=41, auto_apply=True, tenant=tenant_a)
    # The demo fleet has a few SIMs the carrier has no usage for; then a tenth of the rest loses its usage row.
    without = fleet_without_usage(provider)
    assert 0 < len(without) < 5
    missing = sorted(delete_usage(provider, 0.10) + without)
    mail.outbox.clear()

    session = run(provider)

    assert session.status == "succeeded_with_warnings", session.error
    assert session.no_usage_count == len(missing) > 0
    assert session.no_usage_iccids == missing
    assert session.sims_with_usage + session.no_usage_count == session.device_count
    assert "never applied automatically" in session.warnings
    rows = DeviceAssignment.objects.filter(run=session.run)
    kept = rows.filter(iccid__in=missing)
    # Not one of them is a change; each stays on its plan, usage unknown, priced at the plan's monthly charge.
    assert kept.count() == len(missing) and not kept.filter(changed=True).exists()
    assert set(kept.values_list("kept_reason", flat=True)) == {"no_usage"}
    assert not kept.filter(usage_mb__isnull=False).exists()
    period = session.billing_period
    for a in kept.select_related("current_plan", "device"):
        assert a.recommended_plan_id == a.current_plan_id
        # The demo account prorates: a SIM activated this cycle pays its days only.
        factor = Decimal(days_active(period=period, tz=provider.tz, activated=a.device.date_activated, stopped=None)
                         ) / period.days_in_cycle
        fixed = factor * a.current_plan.monthly_cost + a.current_plan.fee_per_sim
        assert a.current_cost == a.recommended_cost and abs(a.current_cost - fixed) < Decimal("0.0001")
    # The covered SIMs were optimized: there are changes, and savings come from them only.
    assert rows.filter(changed=True).exists()
    covered = rows.exclude(iccid__in=missing).aggregate(before=Sum("current_cost"), after=Sum("recommended_cost"))
    assert abs((covered["before"] - covered["after"]) - session.savings) < Decimal("0.01")
    # Never applied automatically: no push, nothing sent to the carrier.
    assert not RatePlanPush.objects.filter(session=session).exists()
    assert not api_changes(server)
    # The warning e-mail names the count.
    warning = [m for m in mail.outbox if m.subject.startswith(COVERAGE_SUBJECT)]
    assert len(warning) == 1 and f"{len(missing):,} SIMs without usage data" in warning[0].subject
    assert missing[0] in warning[0].body
    # The AMOP 100 % event carries the count and the ICCIDs.
    last = session.events.order_by("-sequence").first().payload["data"]
    assert last["Progress"] == 100 and last["NoUsageDeviceCount"] == len(missing)
    assert last["NoUsageIccids"] == missing and last["Status"] == "succeeded_with_warnings"
    # The API and the report list them.
    body = api.get(f"/api/sessions/{session.guid}/").json()
    assert body["status"] == "succeeded_with_warnings" and body["no_usage_count"] == len(missing)
    assert body["no_usage_iccids"] == missing and body["sims_with_usage"] == session.sims_with_usage
    sheet = openpyxl.load_workbook(report_open(session.report_path), read_only=True)["No usage data"]
    assert [r[0] for r in sheet.iter_rows(min_row=3, values_only=True)] == missing
    # An operator may still apply the covered SIMs' changes by hand.
    page = api.post(f"/api/sessions/{session.guid}/apply/")
    assert page.status_code in (201, 202), page.content


def test_above_the_threshold_the_session_succeeds_but_still_keeps_the_sims_without_usage(inline_tasks, carrier_simulator_factory,
                                                                                           settings):
    settings.MIN_USAGE_COVERAGE = 0.9
    server = carrier_simulator_factory(sims=300, seed=42)
    provider = fleet(server, devices=300, seed=42, auto_apply=True)
    without = fleet_without_usage(provider)
    missing = sorted(delete_usage(provider, 0.05) + without)
    session = run(provider)
    assert session.status == "succeeded" and not session.warnings
    assert session.no_usage_iccids == missing
    assert not DeviceAssignment.objects.filter(run=session.run, iccid__in=missing, changed=True).exists()
    push = RatePlanPush.objects.get(session=session)  # applied automatically, without the kept SIMs
    assert not set(api_changes(server)) & set(missing) and push.total > 0


def test_usage_of_another_cycle_or_older_than_the_max_age_does_not_count(inline_tasks, carrier_simulator_factory, settings):
    server = carrier_simulator_factory(sims=200, seed=43)
    provider = fleet(server, devices=200, seed=43)
    usages = list(DeviceUsage.objects.filter(device__provider=provider, device__status="ACTIVATED")
                  .select_related("device", "billing_period").order_by("device__iccid"))
    period = usages[0].billing_period
    stale, last_cycle = usages[0], usages[1]
    DeviceUsage.objects.filter(pk=stale.pk).update(synced_at=timezone.now() - dt.timedelta(hours=25))
    earlier = BillingPeriod.objects.create(provider=provider, start_date=period.start_date - dt.timedelta(days=31),
                                           end_date=period.start_date - dt.timedelta(days=1))
    DeviceUsage.objects.filter(pk=last_cycle.pk).update(billing_period=earlier)
    without = fleet_without_usage(provider)
    session = run(provider)
    assert session.no_usage_iccids == sorted([stale.device.iccid, last_cycle.device.iccid, *without])
    settings.USAGE_MAX_AGE_HOURS = 48
    session = run(provider)
    assert session.no_usage_iccids == sorted([last_cycle.device.iccid, *without])


def test_a_failed_usage_call_is_retried_within_the_sync_and_what_still_fails_is_listed(inline_tasks, carrier_simulator_factory,
                                                                                        tenant_a):
    from devices.testing import fast_client, simulated_provider

    server = carrier_simulator_factory(sims=120, seed=44)
    activated = [i for i, s in zip(server.carrier.iccids, server.carrier.status, strict=True) if s == "ACTIVATED"]
    always, once = activated[:3], activated[3:8]
    server.carrier.faults = Faults(usage_refused=frozenset(always), usage_refused_once=set(once))
    provider = simulated_provider(server=server, tenant=tenant_a)
    device_services.device_sync(provider=provider, client=fast_client(provider))
    usage_run = device_services.usage_sync(provider=provider, client=fast_client(provider))
    assert usage_run.status == "succeeded"
    assert [r["iccid"] for r in usage_run.rejects] == sorted(always)
    assert usage_run.rejected == 3 and all(i in usage_run.error for i in always)
    stored = set(DeviceUsage.objects.filter(device__provider=provider).values_list("device__iccid", flat=True))
    assert set(once) <= stored and not set(always) & stored
    session = run(provider)
    assert session.no_usage_iccids == sorted(always)
    assert SyncRun.objects.filter(pk=usage_run.pk, rejects__isnull=False).exists()
    assert Device.objects.filter(provider=provider, iccid__in=always).count() == 3
