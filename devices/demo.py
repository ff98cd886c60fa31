"""The demo tenant: a Jasper account on the carrier simulator with a realistic fleet, and a second, smaller one on a
second simulator (another fleet, the same customers, its own prices) for cross-provider optimization."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from carrieropt.models import Tenant
from carrieropt.money import MONEY_PLACES
from carriers import BYTES_PER_MB
from carriers.simulator import fleet as fleet_spec
from devices.models import STOPPED_STATUSES, Customer, Device, DevicePin, DeviceUsage
from devices.selectors import usage_rows_count
from devices.staging import statistics_refresh
from devices.usage import projected_mb
from rateplans.models import CommunicationPlan, Integration, PortalType, RatePlan, ServiceProvider
from rateplans.services import billing_period_current

DEMO_TENANT = "Acme IoT (demo)"
DEMO_PROVIDER = "Acme Jasper (simulated)"
DEMO_SECOND_PROVIDER = "Acme Jasper West (simulated)"
DEMO_PINS = 3
# The second account's fleet seed is the demo's plus this (another fleet: other ICCIDs, the same customers), and its
# prices are the demo catalogue's with a cheaper recurring charge and dearer overage: light users cost less there,
# heavy ones more, so the cross-provider comparison has something to show.
DEMO_SECOND_SEED_OFFSET = 1
DEMO_SECOND_MONTHLY_FACTOR = Decimal("0.85")
DEMO_SECOND_OVERAGE_FACTOR = Decimal("1.30")


@dataclass(frozen=True)
class SeedResult:
    tenant: Tenant
    provider: ServiceProvider
    rate_plans: int
    communication_plans: int
    devices: int
    usages: int
    second_provider: ServiceProvider | None = None
    second_devices: int = 0


def demo_catalogue_upsert(*, provider: ServiceProvider, monthly_factor: Decimal = Decimal(1),
                          overage_factor: Decimal = Decimal(1)) -> dict[str, RatePlan]:
    plans = {}
    for spec in fleet_spec.CATALOGUE:
        plans[spec.code], _ = RatePlan.objects.update_or_create(
            provider=provider, code=spec.code,
            defaults={
                "name": spec.code.replace("-", " "),
                "monthly_cost": (Decimal(str(spec.monthly_cost)) * monthly_factor).quantize(MONEY_PLACES),
                "included_mb": Decimal(str(spec.included_mb)),
                "overage_rate": (Decimal(str(spec.overage_rate)) * overage_factor).quantize(MONEY_PLACES),
                "overage_block_mb": Decimal(str(spec.overage_block_mb)),
                "pooled": spec.pooled,
                "active": True,
            },
        )
    for spec in fleet_spec.COMMUNICATION_PLANS:
        comm, _ = CommunicationPlan.objects.get_or_create(provider=provider, name=spec.name)
        comm.rate_plans.set([plans[code] for code in spec.rate_plans])
    return plans


def _demo_account(*, tenant: Tenant, name: str, url: str, monthly_factor=Decimal(1),
                  overage_factor=Decimal(1)) -> tuple[ServiceProvider, dict[str, RatePlan]]:
    provider, _ = ServiceProvider.objects.update_or_create(
        tenant=tenant, name=name,
        defaults={
            "integration": Integration.JASPER,
            "portal_type": PortalType.M2M,
            "api_base_url": url,
            "username": fleet_spec.DEMO_USERNAME,
            "api_key": fleet_spec.DEMO_API_KEY,
            "billing_timezone": fleet_spec.DEMO_TIMEZONE,
            "billing_cycle_end_day": fleet_spec.DEMO_CYCLE_END_DAY,
            "report_recipients": "fleet-ops@acme.example",
            # The demo talks to the simulator on loopback, not to a carrier: a real Jasper
            # account keeps the carrier's 5 calls/s, where cycle-to-date usage for 10,000
            # SIMs (one call each) takes over half an hour.
            "rate_limit_per_second": Decimal("500"),
            "max_concurrency": 4,
        },
    )
    return provider, demo_catalogue_upsert(provider=provider, monthly_factor=monthly_factor,
                                           overage_factor=overage_factor)


@transaction.atomic
def demo_seed(*, devices: int, seed: int, now: dt.datetime | None = None, second_devices: int = 0) -> SeedResult:
    """Create or refresh the demo tenant; running it twice with the same arguments changes nothing.

    second_devices > 0: also the second account (DEMO_SECOND_PROVIDER, on SIMULATOR_SECOND_URL) with that many SIMs
    of fleet seed + DEMO_SECOND_SEED_OFFSET, and cross-provider optimization switched on for the tenant."""
    now = now or timezone.now()
    tenant, _ = Tenant.objects.get_or_create(slug="acme-iot", defaults={"name": DEMO_TENANT})
    provider, plans = _demo_account(tenant=tenant, name=DEMO_PROVIDER, url=settings.SIMULATOR_URL)
    usages = _demo_fleet(tenant=tenant, provider=provider, plans=plans, devices=devices, seed=seed, now=now)
    # A few SIMs an operator keeps on their plan (the demo shows pins in the admin, the API and the session).
    for device in Device.objects.filter(provider=provider, status="ACTIVATED").order_by("iccid")[:DEMO_PINS]:
        DevicePin.objects.get_or_create(device=device, defaults={"reason": "Demo: the customer's contract fixes this plan"})
    second = None
    if second_devices > 0:
        second, second_plans = _demo_account(tenant=tenant, name=DEMO_SECOND_PROVIDER, url=settings.SIMULATOR_SECOND_URL,
                                             monthly_factor=DEMO_SECOND_MONTHLY_FACTOR,
                                             overage_factor=DEMO_SECOND_OVERAGE_FACTOR)
        _demo_fleet(tenant=tenant, provider=second, plans=second_plans, devices=second_devices,
                    seed=seed + DEMO_SECOND_SEED_OFFSET, now=now)
        if tenant.cross_provider is None:
            tenant.cross_provider = True
            tenant.save(update_fields=["cross_provider"])
    statistics_refresh()  # a session right after the seed plans its queries on the fleet as seeded
    return SeedResult(
        tenant=tenant, provider=provider,
        rate_plans=RatePlan.objects.filter(provider=provider).count(),
        communication_plans=CommunicationPlan.objects.filter(provider=provider).count(),
        devices=Device.objects.filter(provider=provider).count(),
        usages=usages,
        second_provider=second,
        second_devices=Device.objects.filter(provider=second).count() if second else 0,
    )


def _demo_fleet(*, tenant: Tenant, provider: ServiceProvider, plans: dict[str, RatePlan], devices: int, seed: int,
                now: dt.datetime) -> int:
    """The account's SIMs and usage as the simulator with this seed serves them; returns the cycle's usage rows."""
    comms = {c.name: c for c in CommunicationPlan.objects.filter(provider=provider)}
    fleet = fleet_spec.generate_fleet(devices, seed)

    # The tenant's customers, as the simulator names them on its SIMs (Get Device Details' `customer`).
    customers = [Customer.objects.get_or_create(tenant=tenant, name=name)[0] for name in fleet_spec.CUSTOMERS]
    plan_rows = [plans[code] for code in fleet_spec.PLAN_CODES]
    comm_rows = [comms[c.name] for c in fleet_spec.COMMUNICATION_PLANS]
    second = dt.timedelta(seconds=1)
    rows = [
        Device(
            provider=provider, iccid=str(fleet.iccid[i]), status=fleet_spec.STATUSES[fleet.status[i]],
            rate_plan=plan_rows[fleet.rate_plan[i]], rate_plan_code=plan_rows[fleet.rate_plan[i]].code,
            communication_plan=comm_rows[fleet.comm_plan[i]], communication_plan_name=comm_rows[fleet.comm_plan[i]].name,
            customer=customers[fleet.customer[i]] if fleet.customer[i] >= 0 else None,
            customer_name=fleet.customer_name(i) or "",
            date_activated=now - int(fleet.date_activated[i]) * second,
            date_added=now - int(fleet.date_activated[i]) * second,
            date_updated=now - int(fleet.date_updated[i]) * second,
            # A stopped SIM stopped when it last changed (as the sync records it).
            deactivated_at=(now - int(fleet.date_updated[i]) * second
                            if fleet_spec.STATUSES[fleet.status[i]] in STOPPED_STATUSES else None),
            synced_at=now,
        )
        for i in range(len(fleet))
    ]
    Device.objects.bulk_create(
        rows, batch_size=2000, update_conflicts=True, unique_fields=["provider", "iccid"],
        update_fields=["status", "rate_plan", "rate_plan_code", "communication_plan", "communication_plan_name",
                       "customer", "customer_name",
                       "date_activated", "date_added", "date_updated", "deactivated_at", "synced_at", "missing_since"],
    )
    ids = dict(Device.objects.filter(provider=provider).values_list("iccid", "id"))
    # A smaller fleet than last time: the SIMs beyond it are no longer part of the demo.
    wanted = set(fleet.iccid.tolist())
    stale = [pk for iccid, pk in ids.items() if iccid not in wanted]
    for chunk in range(0, len(stale), 5000):
        Device.objects.filter(pk__in=stale[chunk:chunk + 5000]).delete()

    period = billing_period_current(provider=provider, at=now)
    start, end = period.starts_at(), period.ends_at()
    fraction = min(1.0, max(1e-6, (now - start) / (end - start)))
    # The numbers the simulator answers at this moment (its usage curve), as a usage sync would have stored them.
    cycle_start = period.start_date
    ctd_bytes = [fleet_spec.ctd_bytes(float(fleet.cycle_usage_mb[i]), fraction=fraction, trend=fleet_spec.usage_trend(
        seed=seed, index=i, comm_plan=fleet_spec.COMMUNICATION_PLANS[fleet.comm_plan[i]].name, cycle_start=cycle_start))
        for i in range(len(fleet))]
    usages = []
    for i in range(len(fleet)):
        if fleet.usage_unavailable[i]:
            continue  # the carrier has no usage for it (the simulator fails its usage call)
        usage_mb = round(int(ctd_bytes[i]) / BYTES_PER_MB, 3)
        status = fleet_spec.STATUSES[fleet.status[i]]
        usages.append(DeviceUsage(
            device_id=ids[str(fleet.iccid[i])], billing_period=period, ctd_bytes=int(ctd_bytes[i]),
            usage_mb=Decimal(f"{usage_mb:.3f}"), usage_date=now,
            projected_mb=Decimal(f"{projected_mb(int(ctd_bytes[i]) / BYTES_PER_MB, status=status, usage_date=now, period_start=start, period_end=end, now=now):.3f}"),
        ))
    no_usage = [ids[str(iccid)] for iccid in fleet.iccid[fleet.usage_unavailable]]
    DeviceUsage.objects.filter(billing_period=period, device_id__in=no_usage).delete()
    DeviceUsage.objects.bulk_create(
        usages, batch_size=2000, update_conflicts=True, unique_fields=["device", "billing_period"],
        update_fields=["ctd_bytes", "usage_mb", "projected_mb", "usage_date", "synced_at"],
    )
    return usage_rows_count(provider=provider, period=period)
