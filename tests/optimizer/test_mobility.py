"""Mobility accounts (legacy-behaviour.md section 8): the legacy method takes SIMs one by one only ("no grouping"
strategies), never by communication plan; M2M accounts keep all four strategies."""
import numpy as np
import pytest

from devices.models import Device
from optimizer import engine
from optimizer import services as optimizer_services
from optimizer.selectors import group_data
from rateplans.models import CommunicationPlan
from tests.factories_results import fleet_seed
from tests.optimizer.test_services import built


def two_comm_plans_one_group(provider):
    """One group of two communication plans allowing the same rate plans, the SIMs split between them."""
    devices = fleet_seed(provider=provider, groups=2, sims_per_group=40, seed=1)  # a fleet where it matters
    standard = CommunicationPlan.objects.get(provider=provider, name="CP-Fleet-Standard")
    twin = CommunicationPlan.objects.create(provider=provider, name="CP-Fleet-Twin")
    twin.rate_plans.set(standard.rate_plans.all())
    Device.objects.filter(pk__in=[d.pk for d in devices[40::2]]).update(communication_plan=twin)


@pytest.mark.parametrize("portal_type", ["Mobility", "M2M"])
def test_legacy_items_of_a_mobility_account_use_the_no_grouping_strategies_only(provider_a, portal_type):
    provider_a.portal_type = portal_type
    provider_a.save(update_fields=["portal_type"])
    two_comm_plans_one_group(provider_a)
    run = built(provider_a, method="legacy")
    for queue_id in optimizer_services.work_items_create(run=run):
        assert optimizer_services.work_item_run(queue_id=queue_id, worker="w1")
    group = run.comm_groups.get(communication_plans__name="CP-Fleet-Twin")
    data = group_data(group=group)
    index = {c: i for i, c in enumerate(p.code for p in data.plans)}
    sequences = [tuple(index[c] for c in seq) for q in group.queues.all() for seq in q.sequences]
    alone = engine.legacy_evaluate_sequences(data.problem, 0, sequences, groupings=engine.NO_GROUPING)
    every = engine.legacy_evaluate_sequences(data.problem, 0, sequences)
    assert every.cost < alone.cost, "on this fleet a walk by communication plan is cheaper"
    results = list(group.results.all())
    best = min(results, key=lambda r: r.cost)
    if portal_type == "Mobility":
        assert all("by communication plan" not in r.strategy for r in results)
        assert abs(float(best.cost) - alone.cost) < 1e-4
    else:
        assert abs(float(best.cost) - every.cost) < 1e-4
    plan_ids = np.frombuffer(bytes(best.assignment), dtype="<i8")
    assert len(plan_ids) == len(data.device_ids)
