"""Session scopes: a customer's SIMs on one account, or on every account of the tenant (cross-provider, compared side
by side); the one-active rule per account for every scope; AMOP's OptimizationType and the customer's ids; and the
refusals (foreign customer, cross-provider switched off, an account busy)."""
import json
from decimal import Decimal

import numpy as np
import pytest
from django.db.models import F
from django.urls import reverse
from openpyxl import load_workbook

from devices.demo import demo_catalogue_upsert
from devices.models import Customer, Device
from optimizer import engine
from optimizer.models import DeviceAssignment
from optimizer.selectors import catalogue_from_plans
from rateplans.models import CommunicationPlan, RatePlan
from rateplans.services import billing_period_current
from sessions.models import OptimizationSession, Scope, SessionStatus
from sessions.reports import report_open
from sessions.services import SessionAlreadyRunning, session_cancel, session_start
from tests import factories
from tests.report_storage import use_report_folder

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.demo(devices=150, seed=5)]


def second_account(demo, *, sims: int = 40, customer_name: str = "Northwind Freight"):
    """Another carrier account of the demo tenant: the demo catalogue 20 % cheaper, `sims` SIMs of the customer,
    each with usage of the account's current cycle."""
    provider = factories.ServiceProviderFactory(
        tenant=demo.tenant, name="Second carrier", billing_timezone=demo.provider.billing_timezone,
        billing_cycle_end_day=demo.provider.billing_cycle_end_day)
    demo_catalogue_upsert(provider=provider)
    RatePlan.objects.filter(provider=provider).update(monthly_cost=F("monthly_cost") * Decimal("0.8"))
    customer = Customer.objects.get(tenant=demo.tenant, name=customer_name)
    period = billing_period_current(provider=provider)
    comms = list(CommunicationPlan.objects.filter(provider=provider).prefetch_related("rate_plans").order_by("name"))
    rng = np.random.default_rng(3)
    for i in range(sims):
        comm = comms[i % len(comms)]
        plan = sorted(comm.rate_plans.all(), key=lambda p: p.pk)[0]
        device = factories.DeviceFactory(provider=provider, iccid=f"8901999{i:012d}", rate_plan=plan,
                                         rate_plan_code=plan.code, communication_plan=comm,
                                         communication_plan_name=comm.name, customer=customer,
                                         customer_name=customer.name)
        mb = Decimal(f"{float(rng.gamma(2.0, 40.0)):.3f}")
        factories.DeviceUsageFactory(device=device, billing_period=period, usage_mb=mb, projected_mb=mb)
    return provider, customer


def customer_billable(provider, customer) -> set[str]:
    period = billing_period_current(provider=provider)
    from devices.models import billed_in_cycle

    return set(Device.objects.filter(billed_in_cycle(cycle_start=period.starts_at()), provider=provider,
                                     customer=customer, missing_since__isnull=True).values_list("iccid", flat=True))


def additional(event) -> dict:
    return json.loads(event.payload["data"]["AdditionalJson"])["data"]


def test_a_customer_session_optimizes_only_that_customers_sims_and_says_so_to_amop(inline_tasks, demo):
    northwind = Customer.objects.get(tenant=demo.tenant, name="Northwind Freight")
    northwind.amop_customer_id, northwind.amop_site_id = "C-77", "S-9"
    northwind.save()
    session = session_start(provider=demo.provider, scope=Scope.CUSTOMER, customer=northwind, sync_devices=False)
    session = OptimizationSession.objects.get(pk=session.pk)
    assert session.is_complete, session.error

    expected = customer_billable(demo.provider, northwind)
    all_billable = Device.objects.filter(provider=demo.provider).count()
    assert 20 < len(expected) < all_billable
    rows = DeviceAssignment.objects.filter(run=session.run)
    assert set(rows.values_list("iccid", flat=True)) == expected and session.device_count == len(expected)
    assert session.run.customer_id == northwind.pk
    events = list(session.events.order_by("sequence"))
    assert [e.progress for e in events][-1] == 100
    for event in events:
        data = event.payload["data"]
        assert data["CustomerId"] == "C-77"
        assert additional(event)["OptimizationType"] == "Customer"
        assert additional(event)["SiteId"] == "S-9" and additional(event)["CarrieroptCustomerId"] == northwind.pk


def test_a_carrier_session_still_says_carrier_and_the_tenant(inline_tasks, demo):
    session = session_start(provider=demo.provider, sync_devices=False)
    event = OptimizationSession.objects.get(pk=session.pk).events.order_by("sequence").last()
    assert event.payload["data"]["CustomerId"] == demo.tenant.pk
    assert additional(event)["OptimizationType"] == "Carrier" and additional(event)["SiteId"] == demo.tenant.pk


def test_one_active_session_per_account_whatever_the_scope(demo):
    northwind = Customer.objects.get(tenant=demo.tenant, name="Northwind Freight")
    second, _ = second_account(demo)
    demo.tenant.cross_provider = True
    demo.tenant.save()
    customer_session = session_start(provider=demo.provider, scope=Scope.CUSTOMER, customer=northwind,
                                     sync_devices=False)
    with pytest.raises(SessionAlreadyRunning):
        session_start(provider=demo.provider, sync_devices=False)
    # The cross-provider start needs both accounts: the first is busy, so nothing is made on the second either.
    before = OptimizationSession.objects.count()
    with pytest.raises(SessionAlreadyRunning) as refused:
        session_start(scope=Scope.CROSS_PROVIDER, customer=northwind, sync_devices=False)
    assert refused.value.extra["active_session"] == str(customer_session.guid)
    assert OptimizationSession.objects.count() == before
    assert not OptimizationSession.objects.filter(provider=second).exists()

    session_cancel(session=customer_session, cancelled_by="test")
    cross = session_start(scope=Scope.CROSS_PROVIDER, customer=northwind, sync_devices=False)
    assert cross.provider_id == min(demo.provider.pk, second.pk)
    child = OptimizationSession.objects.get(parent=cross)
    assert {cross.provider_id, child.provider_id} == {demo.provider.pk, second.pk}
    # A customer session on two accounts blocks both.
    for account in (demo.provider, second):
        with pytest.raises(SessionAlreadyRunning):
            session_start(provider=account, sync_devices=False)
    # Cancelling the cross-provider session frees both.
    session_cancel(session=cross, cancelled_by="test")
    child.refresh_from_db()
    assert child.status == SessionStatus.CANCELLED
    assert session_start(provider=second, sync_devices=False).status == SessionStatus.PENDING


def test_cross_provider_optimizes_each_account_on_its_catalogue_and_compares_the_fleet(inline_tasks, demo, settings,
                                                                                       tmp_path):
    use_report_folder(settings, tmp_path / "reports")
    second, northwind = second_account(demo, sims=40)
    demo.tenant.cross_provider = True
    demo.tenant.save()
    cross = session_start(scope=Scope.CROSS_PROVIDER, customer=northwind, sync_devices=False)
    cross = OptimizationSession.objects.get(pk=cross.pk)
    child = OptimizationSession.objects.get(parent=cross)
    assert cross.is_complete and child.is_complete, (cross.error, child.error)
    # The parent waited for its account's session: it finished last.
    assert cross.finished_at >= child.finished_at

    members = {cross.provider_id: cross, child.provider_id: child}
    for provider_id, member in members.items():
        rows = DeviceAssignment.objects.filter(run=member.run)
        assert set(rows.values_list("iccid", flat=True)) == customer_billable(member.provider, northwind)
        # Every recommendation is a plan of the SIM's own carrier account: nothing moves between carriers.
        plan_accounts = set(RatePlan.objects.filter(pk__in=rows.values("recommended_plan_id"))
                            .values_list("provider_id", flat=True))
        assert plan_accounts == {provider_id}

    comparison = cross.comparison
    accounts = {a["provider"]: a for a in comparison["accounts"]}
    # Written while this session finalized (its report carries it): each account as it ended, this one too.
    assert [a["status"] for a in comparison["accounts"]] == [cross.status, child.status] == ["succeeded"] * 2
    assert set(accounts) == set(members)
    for provider_id, member in members.items():
        a = accounts[provider_id]
        assert a["sims"] == member.device_count and Decimal(a["optimized_cost"]) == member.optimized_cost
        assert Decimal(a["savings"]) == member.current_cost - member.optimized_cost
        # The changes a push of this account would make: its rows whose plan changes.
        assert a["changes"] == DeviceAssignment.objects.filter(run=member.run, changed=True).count()
    assert comparison["total"]["sims"] == cross.device_count + child.device_count
    assert comparison["total"]["changes"] == sum(a["changes"] for a in comparison["accounts"]) > 0

    # The whole fleet on each catalogue, priced here independently: every SIM with usage, on any plan of the account.
    usage = np.array([float(u) for u in DeviceAssignment.objects.filter(
        run__in=[cross.run, child.run], usage_mb__isnull=False).values_list("usage_mb", flat=True)])
    assert comparison["fleet_sims_priced"] == len(usage) > 40
    for provider_id, member in members.items():
        plans = list(RatePlan.objects.filter(provider_id=provider_id, active=True).order_by("pk"))
        problem = engine.Problem(catalogue=catalogue_from_plans(plans), usage_mb=usage,
                                 group=np.zeros(len(usage), np.int32), allowed=np.ones((1, len(plans)), bool),
                                 billing=engine.Billing(days_in_cycle=member.billing_period.days_in_cycle,
                                                        days_remaining=member.billing_period.days_in_cycle))
        cost = engine.solve_certified(problem).total_cost
        assert abs(Decimal(accounts[provider_id]["fleet_cost"]) - Decimal(str(cost))) < Decimal("0.01")
    # Same plans 20 % cheaper on the second account: the fleet costs less there.
    assert Decimal(accounts[second.pk]["fleet_cost"]) < Decimal(accounts[demo.provider.pk]["fleet_cost"])
    assert accounts[second.pk]["cheapest_for_fleet"] and not accounts[demo.provider.pk]["cheapest_for_fleet"]

    last = cross.events.order_by("sequence").last()
    assert last.progress == 100 and additional(last)["OptimizationType"] == "CrossProvider"
    assert last.payload["data"]["Results"]["Accounts"]["accounts"] == comparison["accounts"]
    assert additional(child.events.order_by("sequence").last())["CrossProviderSessionGuid"] == str(cross.guid)

    sheet = load_workbook(report_open(cross.report_path))["Accounts"]
    names = [row[0].value for row in sheet.iter_rows(min_row=3)]
    assert names == [a["provider_name"] for a in comparison["accounts"]] + ["Total"]


def test_an_account_failing_fails_the_cross_provider_session(inline_tasks, demo):
    second, northwind = second_account(demo, sims=10)
    demo.tenant.cross_provider = True
    demo.tenant.save()
    # The second account's catalogue is invalid: its session fails at grouping, and with it the whole optimization.
    RatePlan.objects.filter(provider=second).update(overage_block_mb=0)
    cross = session_start(scope=Scope.CROSS_PROVIDER, customer=northwind, sync_devices=False)
    cross.refresh_from_db()
    child = OptimizationSession.objects.get(parent=cross)
    assert child.provider_id == second.pk and child.status == SessionStatus.FAILED
    assert "invalid" in child.error
    assert cross.status == SessionStatus.FAILED and cross.error == f"Second carrier: {child.error}"
    assert cross.events.order_by("sequence").last().kind == "ErrorMessage"


def test_api_start_scopes_and_refusals(api, demo, alice, tenant_b):
    demo.tenant.users.add(alice)
    url = reverse("api:session-list")
    northwind = Customer.objects.get(tenant=demo.tenant, name="Northwind Freight")
    bobs = Customer.objects.create(tenant=tenant_b, name="Northwind Freight")

    r = api.post(url, {"provider": demo.provider.pk, "scope": "customer", "customer": bobs.pk,
                       "sync_devices": False}, content_type="application/json")
    assert r.status_code == 404 and "customer" in r.json()["error"]["fields"]
    r = api.post(url, {"provider": demo.provider.pk, "scope": "customer", "sync_devices": False},
                 content_type="application/json")
    assert r.status_code == 400 and "customer" in r.json()["error"]["fields"]
    r = api.post(url, {"provider": demo.provider.pk, "customer": northwind.pk, "sync_devices": False},
                 content_type="application/json")
    assert r.status_code == 400 and "customer" in r.json()["error"]["fields"]
    r = api.post(url, {"scope": "everything", "customer": northwind.pk}, content_type="application/json")
    assert r.status_code == 400 and "scope" in r.json()["error"]["fields"]
    r = api.post(url, {"scope": "cross_provider", "customer": northwind.pk, "sync_devices": False},
                 content_type="application/json")
    assert r.status_code == 409 and r.json()["error"]["code"] == "cross_provider_disabled"
    assert "scope" in r.json()["error"]["fields"]
    second_account(demo, sims=5)
    demo.tenant.cross_provider = True
    demo.tenant.save()
    r = api.post(url, {"scope": "cross_provider", "customer": northwind.pk, "provider": demo.provider.pk,
                       "sync_devices": False}, content_type="application/json")
    assert r.status_code == 400 and "provider" in r.json()["error"]["fields"]
    assert not OptimizationSession.objects.exists()

    r = api.post(url, {"scope": "cross_provider", "customer": northwind.pk, "sync_devices": False},
                 content_type="application/json")
    assert r.status_code == 201, r.json()
    body = r.json()
    assert body["scope"] == "cross_provider" and body["customer"] == northwind.pk and body["parent"] is None
    assert len(body["accounts"]) == 2 and body["accounts"][0]["id"] == body["id"]
    r = api.post(url, {"provider": demo.provider.pk, "scope": "customer", "customer": northwind.pk,
                       "sync_devices": False}, content_type="application/json")
    assert r.status_code == 409 and r.json()["error"]["code"] == "session_active"


def test_cross_provider_follows_the_setting_unless_the_tenant_says(demo, settings):
    northwind = Customer.objects.get(tenant=demo.tenant, name="Northwind Freight")
    settings.ENABLE_CROSS_PROVIDER = True
    assert session_start(scope=Scope.CROSS_PROVIDER, customer=northwind, sync_devices=False).is_active
    OptimizationSession.objects.update(status=SessionStatus.CANCELLED)
    demo.tenant.cross_provider = False
    demo.tenant.save()
    from sessions.services import CrossProviderDisabled
    with pytest.raises(CrossProviderDisabled):
        session_start(scope=Scope.CROSS_PROVIDER, customer=Customer.objects.get(pk=northwind.pk), sync_devices=False)


def test_the_accounts_last_session_metrics_are_its_carrier_sessions(inline_tasks, demo, client, settings):
    from tests.config.test_metrics import TOKEN, scrape, value

    settings.METRICS_TOKEN = TOKEN
    carrier = session_start(provider=demo.provider, sync_devices=False)
    northwind = Customer.objects.get(tenant=demo.tenant, name="Northwind Freight")
    customer = OptimizationSession.objects.get(pk=session_start(
        provider=demo.provider, scope=Scope.CUSTOMER, customer=northwind, sync_devices=False).pk)
    carrier.refresh_from_db()
    assert customer.is_complete and customer.finished_at > carrier.finished_at
    samples = scrape(client)
    who = {"provider_id": demo.provider.pk, "provider": demo.provider.name, "tenant": demo.tenant.name}
    assert value(samples, "carrieropt_last_session_devices", **who, session=carrier.guid) == carrier.device_count
    assert customer.device_count < carrier.device_count
    assert not [ls for ls, _ in samples["carrieropt_last_session_devices"] if ls["session"] == str(customer.guid)]


def test_another_tenants_customer_or_one_without_sims_on_the_account_is_refused(demo, tenant_b):
    from carrieropt.errors import NotFound
    from sessions.services import CustomerNotOnAccount

    bobs = Customer.objects.create(tenant=tenant_b, name="Northwind Freight")
    with pytest.raises(NotFound) as refused:
        session_start(provider=demo.provider, scope=Scope.CUSTOMER, customer=bobs, sync_devices=False)
    assert refused.value.field == "customer" and demo.provider.name in refused.value.message
    idle = Customer.objects.create(tenant=demo.tenant, name="No SIMs Ltd")
    with pytest.raises(CustomerNotOnAccount) as refused:
        session_start(provider=demo.provider, scope=Scope.CUSTOMER, customer=idle, sync_devices=False)
    assert refused.value.field == "customer" and "No SIMs Ltd" in refused.value.message
    demo.tenant.cross_provider = True
    demo.tenant.save()
    with pytest.raises(CustomerNotOnAccount):
        session_start(scope=Scope.CROSS_PROVIDER, customer=Customer.objects.get(pk=idle.pk), sync_devices=False)
    assert not OptimizationSession.objects.exists()


def test_a_customer_session_on_an_account_pooling_account_wide_is_refused(demo, api, alice):
    """Its customer's SIMs would share the account's pools with other customers' SIMs it does not see: refused
    (409 naming scope), never priced as if the pools were the customer's alone. Per customer it is exact."""
    from sessions.services import PoolSpansCustomers

    customer = Customer.objects.get(tenant=demo.tenant, name="Northwind Freight")
    demo.provider.pooling = "account"
    demo.provider.save()
    with pytest.raises(PoolSpansCustomers) as refused:
        session_start(provider=demo.provider, scope=Scope.CUSTOMER, customer=customer, sync_devices=False)
    assert refused.value.field == "scope" and "account-wide" in refused.value.message
    demo.tenant.users.add(alice)
    answer = api.post(reverse("api:session-list"), {"provider": demo.provider.pk, "scope": "customer",
                                                     "customer": customer.pk, "sync_devices": False},
                      content_type="application/json")
    assert answer.status_code == 409, answer.content
    assert answer.json()["error"]["code"] == "pool_spans_customers" and "scope" in answer.json()["error"]["fields"]
    assert not OptimizationSession.objects.exists()
    demo.provider.pooling = "customer"
    demo.provider.save()
    assert session_start(provider=demo.provider, scope=Scope.CUSTOMER, customer=customer, sync_devices=False).customer_id == customer.pk


def test_a_cross_provider_start_repeated_with_its_guid_is_the_same_session(api, demo, alice):
    import uuid

    demo.tenant.users.add(alice)
    second_account(demo, sims=5)
    demo.tenant.cross_provider = True
    demo.tenant.save()
    northwind = Customer.objects.get(tenant=demo.tenant, name="Northwind Freight")
    guid = str(uuid.uuid4())
    body = {"scope": "cross_provider", "customer": northwind.pk, "sync_devices": False, "session_guid": guid}
    first = api.post(reverse("api:session-list"), body, content_type="application/json")
    again = api.post(reverse("api:session-list"), body, content_type="application/json")
    assert (first.status_code, again.status_code) == (201, 200) and again.json()["id"] == guid
    assert OptimizationSession.objects.count() == 2  # the session and its second account's, once
    other = api.post(reverse("api:session-list"), {**body, "scope": "customer", "provider": demo.provider.pk},
                     content_type="application/json")
    assert other.status_code == 409 and other.json()["error"]["code"] == "session_guid_conflict"
    assert "scope" in other.json()["error"]["message"]


def test_the_session_page_shows_the_accounts_side_by_side(inline_tasks, demo, alice, client, settings, tmp_path):
    import re

    from carrieropt.money import cents

    use_report_folder(settings, tmp_path / "reports")
    demo.tenant.users.add(alice)
    client.force_login(alice)
    second, northwind = second_account(demo, sims=30)
    demo.tenant.cross_provider = True
    demo.tenant.save()
    cross = OptimizationSession.objects.get(pk=session_start(scope=Scope.CROSS_PROVIDER, customer=northwind,
                                                             sync_devices=False).pk)
    child = OptimizationSession.objects.get(parent=cross)
    page = client.get(reverse("dashboard:session-detail", args=[cross.guid]))
    assert page.status_code == 200
    body = page.content.decode()
    table = body[body.index('<table id="accounts">'):]
    table = table[:table.index("</table>")]
    for a in cross.comparison["accounts"]:
        row = re.search(rf'<tr data-provider="{a["provider"]}">(.*?)</tr>', table, re.S).group(1)
        assert f"{cents(a['fleet_cost']):,}" in row and f"{cents(a['optimized_cost']):,}" in row
    assert "(cheapest)" in re.search(rf'<tr data-provider="{second.pk}">(.*?)</tr>', table, re.S).group(1)
    # The second account's own page says what it is part of.
    child_page = client.get(reverse("dashboard:session-detail", args=[child.guid])).content.decode()
    assert "Northwind Freight" in child_page and reverse("dashboard:session-detail", args=[cross.guid]) in child_page
    # The session list names the customer of each of its two sessions.
    listing = client.get(reverse("dashboard:session-list")).content.decode()
    assert listing.count('data-field="scope">· Northwind Freight (cross-provider)</span>') == 2


@pytest.mark.postgres
def test_concurrent_cross_provider_and_carrier_starts_never_share_an_account(demo):
    """Ten starts at once, cross-provider (both accounts) and carrier (the second account): the database lets exactly
    one win; accounts are taken in id order, so two cross-provider starts cannot deadlock either."""
    import threading

    from django.db import connection

    second, northwind = second_account(demo, sims=5)
    demo.tenant.cross_provider = True
    demo.tenant.save()
    barrier = threading.Barrier(10)
    outcomes = []

    def start(i):
        try:
            barrier.wait()
            if i % 2:
                session_start(scope=Scope.CROSS_PROVIDER, customer=Customer.objects.get(pk=northwind.pk),
                              sync_devices=False)
                outcomes.append("cross")
            else:
                session_start(provider=second, sync_devices=False)
                outcomes.append("carrier")
        except SessionAlreadyRunning:
            outcomes.append("refused")
        except Exception as exc:  # noqa: BLE001 — any other outcome is the failure under test
            outcomes.append(f"error: {exc!r}")
        finally:
            connection.close()

    threads = [threading.Thread(target=start, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [o for o in outcomes if o != "refused"]
    assert len(winners) == 1 and winners[0] in ("cross", "carrier"), outcomes
    assert OptimizationSession.objects.filter(provider=second).count() == 1
    assert OptimizationSession.objects.count() == (2 if winners == ["cross"] else 1)


def test_the_dashboard_starts_customer_and_cross_provider_sessions(demo, alice, client, tenant_b):
    demo.tenant.users.add(alice)
    client.force_login(alice)
    second, northwind = second_account(demo, sims=5)
    demo.tenant.cross_provider = True
    demo.tenant.save()
    start = reverse("dashboard:session-start", args=[demo.provider.pk])
    page = client.get("/").content.decode()
    assert f'<option value="{northwind.pk}">Northwind Freight on this account</option>' in page
    assert f'<option value="{northwind.pk}:all">Northwind Freight on every account (cross-provider)</option>' in page

    answer = client.post(start, {"customer": f"{northwind.pk}:all"}, follow=True)
    assert answer.status_code == 200
    cross = OptimizationSession.objects.get(provider=demo.provider)
    assert (cross.scope, cross.customer_id, cross.trigger) == (Scope.CROSS_PROVIDER, northwind.pk, "dashboard")
    assert OptimizationSession.objects.get(provider=second).parent_id == cross.pk
    assert "Started optimization session" in answer.content.decode() and "on every account" in answer.content.decode()
    session_cancel(session=cross, cancelled_by="test")

    client.post(start, {"customer": str(northwind.pk)})
    mine = OptimizationSession.objects.filter(provider=demo.provider, status="pending").get()
    assert (mine.scope, mine.customer_id) == (Scope.CUSTOMER, northwind.pk)
    assert not OptimizationSession.objects.filter(provider=second, status="pending").exists()
    session_cancel(session=mine, cancelled_by="test")

    theirs = Customer.objects.create(tenant=tenant_b, name="Bob's customer")
    refused = client.post(start, {"customer": str(theirs.pk)})
    assert refused.status_code == 404 and f"customer: {theirs.pk} is not a customer" in refused.content.decode()
    assert client.post(start, {"customer": "everyone"}).status_code == 400
    demo.tenant.cross_provider = False
    demo.tenant.save()
    off = client.post(start, {"customer": f"{northwind.pk}:all"})
    assert off.status_code == 409 and "cross-provider optimization is switched off" in off.content.decode()
    assert not OptimizationSession.objects.filter(status="pending").exists()
