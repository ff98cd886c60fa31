"""Customers end to end: SIMs synced from the simulator with their customers, a session run on them, then the SIM
list (page, API, CSV), the devices API, the session list and the report filtered by customer; another tenant's
customer is refused with a message naming it; AMOP's CustomerId and SiteId are stored on the customer."""
import csv
import html
import io
import re

import pytest
from django.core import mail
from django.db import models
from django.urls import reverse
from openpyxl import load_workbook

from devices.models import Customer, Device
from devices.testing import simulated_provider
from optimizer.models import DeviceAssignment
from sessions import tasks
from sessions.models import OptimizationSession, SessionStatus, Stage
from sessions.reports import report_open
from sessions.services import session_start
from tests.report_storage import use_report_folder


def synced_session(provider) -> OptimizationSession:
    """A session that syncs the account's SIMs from the carrier (the simulator), every stage run here inline."""
    session = session_start(provider=provider, sync_devices=True, method="legacy")
    for stage in (Stage.START, Stage.SYNC, Stage.GROUPING, Stage.QUEUEING):
        tasks.run_stage(session.pk, stage)
    for queue_id in session.run.queues.order_by("pk").values_list("pk", flat=True):
        tasks.run_work_item(queue_id)
    tasks.run_stage(session.pk, Stage.FINALIZING)
    session = OptimizationSession.objects.get(pk=session.pk)
    assert session.status in (SessionStatus.SUCCEEDED, SessionStatus.SUCCEEDED_WITH_WARNINGS), session.error
    mail.outbox.clear()
    return session


@pytest.fixture
def fleet(tenant_a, tenant_b, carrier_simulator_factory, settings, tmp_path):
    use_report_folder(settings, tmp_path / "reports")
    server = carrier_simulator_factory(sims=120, seed=7)
    provider = simulated_provider(server=server, tenant=tenant_a, name="Alice simulated")
    session = synced_session(provider)
    # Bob's tenant has an account on the same carrier: customers of the same names, but his own rows.
    bobs = simulated_provider(server=server, tenant=tenant_b, name="Bob simulated")
    from devices.services import device_sync
    assert device_sync(provider=bobs).status == "succeeded"
    return {"server": server, "provider": provider, "session": session,
            "northwind": Customer.objects.get(tenant=tenant_a, name="Northwind Freight"),
            "bobs_northwind": Customer.objects.get(tenant=tenant_b, name="Northwind Freight")}


def rows_of(body: str) -> list[str]:
    return re.findall(r'<tr class="[^"]*" data-iccid="(\d+)">', body)


def carrier_iccids(fleet, name) -> set[str]:
    return {iccid for iccid, c in fleet["server"].carrier.customers().items() if c == name}


def test_the_sim_list_api_and_csv_filter_by_customer(fleet, api, alice_client):
    session, northwind = fleet["session"], fleet["northwind"]
    expected = carrier_iccids(fleet, "Northwind Freight") & set(
        DeviceAssignment.objects.filter(run=session.run).values_list("iccid", flat=True))
    assert 10 < len(expected) < 100

    body = api.get(reverse("api:session-assignments", args=[session.guid]),
                   {"customer": northwind.pk, "page_size": 1000}).json()
    assert {r["iccid"] for r in body["results"]} == expected
    assert {(r["customer"], r["customer_name"]) for r in body["results"]} == {(northwind.pk, "Northwind Freight")}

    page = alice_client.get(reverse("dashboard:session-sims", args=[session.guid]), {"customer": northwind.pk})
    assert page.status_code == 200
    html = page.content.decode()
    assert set(rows_of(html)) == set(sorted(expected)[:50]) and f"{len(expected)} SIMs" in html
    assert f'<option value="{northwind.pk}" selected>Northwind Freight</option>' in html

    # The CSV export takes the same filters: customer and changed only, largest saving first.
    params = {"customer": northwind.pk, "changed": "true", "sort": "-saving"}
    api_rows = api.get(reverse("api:session-assignments", args=[session.guid]), {**params, "page_size": 1000}).json()
    exported = list(csv.DictReader(io.StringIO(b"".join(alice_client.get(
        reverse("dashboard:session-sims-csv", args=[session.guid]), params).streaming_content).decode())))
    assert [r["iccid"] for r in exported] == [r["iccid"] for r in api_rows["results"]]
    assert exported and {r["customer"] for r in exported} == {"Northwind Freight"}


def test_each_sims_customer_is_the_one_the_session_read(fleet, api, alice_client, django_assert_num_queries):
    """Finalize stores each SIM's customer on its row: the list filters by it without reading devices_device,
    and a SIM that changes customer after the session stays where the session found it."""
    session, northwind = fleet["session"], fleet["northwind"]
    rows = DeviceAssignment.objects.filter(run=session.run)
    assert list(rows.filter(customer__isnull=False).exclude(customer_id=models.F("device__customer_id"))) == []
    assert rows.filter(customer=northwind).exists() and rows.filter(customer__isnull=True).exists()
    moved = rows.filter(customer=northwind).order_by("iccid").first()
    other = Customer.objects.filter(tenant=northwind.tenant).exclude(pk=northwind.pk).first()
    Device.objects.filter(pk=moved.device_id).update(customer=other)

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        body = api.get(reverse("api:session-assignments", args=[session.guid]),
                       {"customer": northwind.pk, "page_size": 1000}).json()
    assert moved.iccid in {r["iccid"] for r in body["results"]}
    assert {r["customer_name"] for r in body["results"]} == {"Northwind Freight"}
    listed = [q["sql"] for q in queries.captured_queries if "optimizer_deviceassignment" in q["sql"]]
    assert listed and not any("devices_device" in sql for sql in listed), listed
    page = alice_client.get(reverse("dashboard:session-sims", args=[session.guid]), {"customer": northwind.pk})
    assert moved.iccid in rows_of(page.content.decode())


def test_another_tenants_customer_is_not_found_naming_it(fleet, api, alice_client):
    session, foreign = fleet["session"], fleet["bobs_northwind"]
    message = f"No customer {foreign.pk} among your tenant's customers."
    for url in (reverse("api:session-assignments", args=[session.guid]), reverse("api:device-list"),
                reverse("api:session-list")):
        response = api.get(url, {"customer": foreign.pk})
        assert response.status_code == 404, url  # another tenant's row does not exist for alice
        assert response.json()["error"]["fields"]["customer"] == [message], url
    # The pages answer as the API does, say which filter is wrong, and list nothing rather than everything.
    page = alice_client.get(reverse("dashboard:session-sims", args=[session.guid]), {"customer": foreign.pk})
    assert page.status_code == 404 and html.escape(message) in page.content.decode()
    assert rows_of(page.content.decode()) == []
    listing = alice_client.get(reverse("dashboard:session-list"), {"customer": foreign.pk})
    body = listing.content.decode()
    assert listing.status_code == 404 and html.escape(message) in body
    assert str(session.guid) not in body and "show every session" in body
    assert api.get(reverse("api:customer-detail", args=[foreign.pk])).status_code == 404
    assert "Bob" not in str(api.get(reverse("api:customer-list")).json())


def test_devices_and_sessions_filter_by_customer(fleet, api, alice_client):
    northwind, provider = fleet["northwind"], fleet["provider"]
    body = api.get(reverse("api:device-list"), {"customer": northwind.pk, "page_size": 1000}).json()
    assert {d["iccid"] for d in body["results"]} == carrier_iccids(fleet, "Northwind Freight")
    assert {d["customer_name"] for d in body["results"]} == {"Northwind Freight"}

    # A customer with no SIM on the account sees none of its sessions.
    lonely = Customer.objects.create(tenant=provider.tenant, name="No SIMs Yet Ltd")
    listed = api.get(reverse("api:session-list"), {"customer": northwind.pk}).json()["results"]
    assert [s["id"] for s in listed] == [str(fleet["session"].guid)]
    assert api.get(reverse("api:session-list"), {"customer": lonely.pk}).json()["results"] == []
    page = alice_client.get(reverse("dashboard:session-list"), {"customer": lonely.pk}).content.decode()
    assert "No sessions yet." in page and str(fleet["session"].guid) not in page


def test_the_report_names_each_sims_customer(fleet):
    session = fleet["session"]
    with report_open(session.report_path) as handle:
        sheet = load_workbook(handle, read_only=True)["Assignments"]
        rows = list(sheet.iter_rows(values_only=True))
    column = list(rows[0]).index("Customer")
    customers = dict(Device.objects.filter(provider=fleet["provider"]).values_list("iccid", "customer__name"))
    listed = {row[0]: row[column] if len(row) > column else None for row in rows[1:] if row[0]}
    assert listed and all(listed[iccid] == (customers[iccid] or None) for iccid in listed)
    assert {"Northwind Freight", "Contoso Water", "Fabrikam Retail"} <= set(listed.values())


def test_amop_ids_are_stored_on_the_customer_and_find_it(fleet, api):
    northwind = fleet["northwind"]
    url = reverse("api:customer-detail", args=[northwind.pk])
    response = api.patch(url, {"amop_customer_id": "4711", "amop_site_id": "12"}, content_type="application/json")
    assert response.status_code == 200, response.content
    assert (response.json()["amop_customer_id"], response.json()["amop_site_id"]) == ("4711", "12")
    assert response.json()["sims"] == len(carrier_iccids(fleet, "Northwind Freight"))
    found = api.get(reverse("api:customer-list"), {"amop_site_id": "12"}).json()["results"]
    assert [c["id"] for c in found] == [northwind.pk]

    other = Customer.objects.get(tenant=northwind.tenant, name="Contoso Water")
    clash = api.patch(reverse("api:customer-detail", args=[other.pk]), {"amop_customer_id": "4711"},
                      content_type="application/json")
    assert clash.status_code == 409 and "AMOP CustomerId" in clash.json()["error"]["message"]
    # Bob's tenant may use the same AMOP ids for its own customer.
    fleet["bobs_northwind"].amop_customer_id = "4711"
    fleet["bobs_northwind"].full_clean()
    renamed = api.patch(url, {"name": "Other"}, content_type="application/json")
    assert renamed.status_code == 400 and "name" in renamed.json()["error"]["fields"]
