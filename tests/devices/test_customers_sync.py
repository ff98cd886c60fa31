"""Customers from the carrier: Get Device Details names each SIM's customer (the device list does not); the sync reads
it for new and changed SIMs only, makes the tenant's Customer rows and links every Device to its own."""
import pytest
from django.test import override_settings

from devices.models import Customer, Device
from devices.services import device_sync
from devices.testing import fast_client, simulated_provider


def sync(provider, **kwargs):
    with fast_client(provider) as client:
        run = device_sync(provider=provider, client=client, **kwargs)
    run.refresh_from_db()
    return run


def detail_reads(server) -> int:
    return sum(1 for r in server.carrier.request_log("/rws/api/v1/devices/") if r["method"] == "GET"
               and not r["path"].endswith(("/ctdUsages", "/usageInZone", "/sessionInfo")))


def stored_customers(provider) -> dict[str, str | None]:
    return dict(Device.objects.filter(provider=provider).values_list("iccid", "customer__name"))


def test_the_sync_links_each_sim_to_its_customer_and_reads_only_what_changed(tenant, carrier_simulator_factory):
    server = carrier_simulator_factory(sims=150, seed=7)
    provider = simulated_provider(server=server, tenant=tenant)
    carrier = server.carrier.customers()
    assert len({c for c in carrier.values() if c}) == 3 and None in carrier.values(), "the simulator gives customers"

    run = sync(provider)
    assert run.status == "succeeded" and run.error == ""
    assert detail_reads(server) == 150
    assert stored_customers(provider) == carrier
    assert sorted(Customer.objects.filter(tenant=tenant).values_list("name", flat=True)) == sorted(
        {c for c in carrier.values() if c})
    assert not Device.objects.filter(provider=provider, customer_name__isnull=True).exists()

    # A full sync lists every SIM again, but reads the details of none of them: none is new or still to read.
    server.carrier.clear_log()
    assert sync(provider, full=True).updated == 0
    assert detail_reads(server) == 0

    # The carrier moves SIMs to another customer (their dateUpdated moves): the next (incremental) sync lists
    # and reads those SIMs only.
    moved = next(i for i, c in carrier.items() if c == "Northwind Freight")
    server.carrier.set_customer(moved, "Contoso Water")
    gone = next(i for i, c in carrier.items() if c == "Fabrikam Retail")
    server.carrier.set_customer(gone, None)
    server.carrier.clear_log()
    run = sync(provider)
    assert (run.kind, run.updated, detail_reads(server)) == ("incremental", 2, 2), run.error
    assert stored_customers(provider) == server.carrier.customers()
    assert Device.objects.get(iccid=gone).customer_name == ""


@override_settings(DEVICE_SYNC_CUSTOMER_READS=40)
def test_customers_beyond_the_reads_per_sync_and_failed_reads_are_read_by_the_next_sync(tenant, carrier_simulator_factory):
    server = carrier_simulator_factory(sims=100, seed=9)
    provider = simulated_provider(server=server, tenant=tenant)
    first = sync(provider)
    assert first.status == "succeeded" and "DEVICE_SYNC_CUSTOMER_READS=40" in first.error
    assert detail_reads(server) == 40
    assert Device.objects.filter(provider=provider, customer_name__isnull=True).count() == 60

    # One SIM's details call is refused: it keeps no customer and is asked next time.
    unlucky = Device.objects.filter(provider=provider, customer_name__isnull=True).order_by("iccid").first()
    server.carrier.faults.details_refused = frozenset([unlucky.iccid])
    second = sync(provider, full=True)
    server.carrier.faults.details_refused = frozenset()
    assert second.status == "succeeded", second.error
    assert f"customer of 1 SIM(s) not read (Get Device Details failed: {unlucky.iccid})" in second.error
    assert Device.objects.get(pk=unlucky.pk).customer_name is None
    with override_settings(DEVICE_SYNC_CUSTOMER_READS=5000):
        third = sync(provider, full=True)
    assert third.status == "succeeded" and third.error == ""
    assert stored_customers(provider) == server.carrier.customers()
    assert Device.objects.get(pk=unlucky.pk).customer_name is not None


def test_customers_are_the_tenants_own(tenant, tenant_b, carrier_simulator_factory):
    server = carrier_simulator_factory(sims=30, seed=7)
    mine = simulated_provider(server=server, tenant=tenant)
    theirs = simulated_provider(server=server, tenant=tenant_b, name="Bob's copy")
    assert sync(mine).status == sync(theirs).status == "succeeded"
    names = sorted({c for c in server.carrier.customers().values() if c})
    for t in (tenant, tenant_b):
        assert sorted(Customer.objects.filter(tenant=t).values_list("name", flat=True)) == names
    assert not Device.objects.filter(provider=mine, customer__tenant=tenant_b).exists()
    assert not Device.objects.filter(provider=theirs, customer__tenant=tenant).exists()


@pytest.mark.parametrize("reads", [0])
def test_no_customer_reads_when_switched_off(tenant, carrier_simulator, settings, reads):
    settings.DEVICE_SYNC_CUSTOMER_READS = reads
    provider = simulated_provider(server=carrier_simulator, tenant=tenant)
    assert sync(provider).status == "succeeded"
    assert detail_reads(carrier_simulator) == 0
    assert not Customer.objects.exists()
