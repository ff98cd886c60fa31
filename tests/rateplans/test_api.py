"""Catalogue API: carrier accounts (write-only API key), rate plans and communication plans, validated per field."""
import re

import pytest
from django.urls import reverse

from rateplans.models import CommunicationPlan, RatePlan, ServiceProvider
from tests.factories import CommunicationPlanFactory, RatePlanFactory, ServiceProviderFactory

ISO_WITH_ZONE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")



def post(client, name, body, **kwargs):
    return client.post(reverse(f"api:{name}", kwargs=kwargs or None), body, content_type="application/json")


def patch(client, name, body, **kwargs):
    return client.patch(reverse(f"api:{name}", kwargs=kwargs), body, content_type="application/json")


NEW_PROVIDER = {"name": "Alice POD19", "integration": "POD19", "api_base_url": "https://rws.example.com",
                "username": "api-user", "api_key": "sk-brand-new-secret", "billing_timezone": "Europe/Berlin"}


def test_provider_create_keeps_the_api_key_write_only(api, tenant_a):
    response = post(api, "provider-list", {**NEW_PROVIDER, "tenant": tenant_a.pk})
    assert response.status_code == 201, response.content
    body = response.json()
    assert "api_key" not in body and body["has_api_key"] is True
    assert "sk-brand-new-secret" not in response.content.decode()
    assert ISO_WITH_ZONE.match(body["created_at"])
    assert body["rate_limit_per_second"] == "5.00"  # money-like decimals travel as strings
    provider = ServiceProvider.objects.get(pk=body["id"])
    assert provider.api_key == "sk-brand-new-secret"
    detail = api.get(reverse("api:provider-detail", kwargs={"pk": provider.pk}))
    assert "sk-brand-new-secret" not in detail.content.decode()


def test_provider_create_requires_the_key_and_reports_fields(api, tenant_a):
    bad = {**NEW_PROVIDER, "tenant": tenant_a.pk, "billing_timezone": "Mars/Olympus", "billing_cycle_end_day": 40}
    del bad["api_key"]
    response = post(api, "provider-list", bad)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert set(error["fields"]) >= {"api_key", "billing_timezone", "billing_cycle_end_day"}


def test_provider_create_in_a_foreign_tenant_is_a_404_naming_the_field(api, tenant_b):
    response = post(api, "provider-list", {**NEW_PROVIDER, "tenant": tenant_b.pk})
    # Another tenant's row does not exist for alice, in a body as in a path.
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert list(response.json()["error"]["fields"]) == ["tenant"]
    # Wrong in another way too: the request is invalid first (400, every field named).
    response = post(api, "provider-list", {**NEW_PROVIDER, "tenant": tenant_b.pk, "max_concurrency": 0})
    assert response.status_code == 400 and set(response.json()["error"]["fields"]) == {"tenant", "max_concurrency"}
    assert not ServiceProvider.objects.filter(name="Alice POD19").exists()


def test_duplicate_provider_name_is_a_409_naming_the_field(api, provider_a, tenant_a):
    # A clash with a stored row, not a malformed request: 409, with the constraint's message per field.
    response = post(api, "provider-list", {**NEW_PROVIDER, "name": provider_a.name, "tenant": tenant_a.pk})
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "conflict" and error["fields"] and "already exists" in error["message"]


def test_provider_update_with_blank_key_keeps_the_stored_key(api, provider_a):
    response = patch(api, "provider-detail", {"api_key": "", "report_recipients": "noc@example.com"}, pk=provider_a.pk)
    assert response.status_code == 200, response.content
    provider_a.refresh_from_db()
    assert provider_a.api_key == "sk-alice-very-secret"
    assert provider_a.report_recipients == "noc@example.com"
    response = patch(api, "provider-detail", {"api_key": "sk-rotated"}, pk=provider_a.pk)
    provider_a.refresh_from_db()
    assert provider_a.api_key == "sk-rotated" and "sk-rotated" not in response.content.decode()


def test_rate_plan_create_and_update(api, provider_a):
    body = {"provider": provider_a.pk, "code": "M2M-1GB", "monthly_cost": "12.5", "included_mb": "1024",
            "overage_rate": "0.0100", "overage_block_mb": "1", "pooled": True}
    response = post(api, "rate-plan-list", body)
    assert response.status_code == 201, response.content
    plan = response.json()
    assert plan["monthly_cost"] == "12.5000" and plan["catalogue_problems"] == []
    response = patch(api, "rate-plan-detail", {"overage_rate": "0"}, pk=plan["id"])
    assert response.status_code == 200
    # Accepted by the catalogue, but the optimizer's rule is shown so the operator sees it before a run.
    assert response.json()["catalogue_problems"] == ["overage_rate must be > 0"]
    assert RatePlan.objects.get(pk=plan["id"]).overage_rate == 0


def test_rate_plan_validation_errors_are_per_field(api, provider_a):
    RatePlanFactory(provider=provider_a, code="TAKEN")
    response = post(api, "rate-plan-list", {"provider": provider_a.pk, "code": "TAKEN", "monthly_cost": "-1",
                                            "included_mb": "abc", "overage_rate": "0.123456789"})
    assert response.status_code == 400
    fields = response.json()["error"]["fields"]
    assert {"monthly_cost", "included_mb", "overage_rate"} <= set(fields)
    response = post(api, "rate-plan-list", {"provider": provider_a.pk, "code": "TAKEN", "monthly_cost": "1",
                                            "included_mb": "1", "overage_rate": "1"})
    assert response.status_code == 409
    assert response.json()["error"]["fields"], "the unique (provider, code) rule is reported"
    assert RatePlan.objects.filter(provider=provider_a, code="TAKEN").count() == 1


def test_communication_plan_create_update_and_foreign_rate_plans(api, provider_a, provider_b):
    mine = RatePlanFactory(provider=provider_a)
    other = RatePlanFactory(provider=provider_a)
    foreign = RatePlanFactory(provider=provider_b)
    response = post(api, "communication-plan-list", {"provider": provider_a.pk, "name": "CP-A", "rate_plans": [mine.pk]})
    assert response.status_code == 201, response.content
    comm = response.json()
    assert comm["rate_plans"] == [mine.pk]
    response = patch(api, "communication-plan-detail", {"rate_plans": [mine.pk, other.pk]}, pk=comm["id"])
    assert sorted(response.json()["rate_plans"]) == sorted([mine.pk, other.pk])
    # Another tenant's rate plan is unknown to alice: a 404 naming the field, and nothing changes.
    response = patch(api, "communication-plan-detail", {"rate_plans": [foreign.pk]}, pk=comm["id"])
    assert response.status_code == 404 and list(response.json()["error"]["fields"]) == ["rate_plans"]
    assert set(CommunicationPlan.objects.get(pk=comm["id"]).rate_plans.all()) == {mine, other}


def test_communication_plan_cannot_mix_carrier_accounts_of_one_tenant(api, provider_a, tenant_a):
    second = ServiceProvider.objects.create(tenant=tenant_a, name="Second", api_base_url="https://x.example.com",
                                            username="u", api_key="k")
    plan = RatePlanFactory(provider=second)
    response = post(api, "communication-plan-list", {"provider": provider_a.pk, "name": "CP-X", "rate_plans": [plan.pk]})
    assert response.status_code == 400
    assert "rate_plans" in response.json()["error"]["fields"]
    assert not CommunicationPlan.objects.filter(name="CP-X").exists()


def test_catalogue_lists_filter_by_provider_and_keep_query_count(api, provider_a, django_assert_max_num_queries):
    plans = [RatePlanFactory(provider=provider_a) for _ in range(5)]
    for i in range(8):
        CommunicationPlanFactory(provider=provider_a, name=f"CP-{i}", rate_plans=plans[: i % 5 + 1])
    # token, count, page (+ prefetch of rate plans): independent of the number of rows.
    with django_assert_max_num_queries(4):
        body = api.get(reverse("api:communication-plan-list"), {"provider": provider_a.pk}).json()
    assert body["count"] == 8
    with django_assert_max_num_queries(3):
        body = api.get(reverse("api:rate-plan-list"), {"provider": provider_a.pk}).json()
    assert body["count"] == 5


def test_moving_the_account_elsewhere_needs_the_api_key_again(api, provider_a, tenant_a):
    # Otherwise a token holder could point the account at a host of theirs and receive the stored key.
    for change in ({"api_base_url": "https://collector.example.net"}, {"username": "someone-else"}):
        response = patch(api, "provider-detail", change, pk=provider_a.pk)
        assert response.status_code == 409, change  # the stored key conflicts with the change: send it again
        assert "api_key" in response.json()["error"]["fields"]
    provider_a.refresh_from_db()
    assert provider_a.api_base_url == "http://127.0.0.1:8765" and provider_a.username == "api-user"
    response = patch(api, "provider-detail", {"api_base_url": "https://rws.example.com", "api_key": "sk-new"}, pk=provider_a.pk)
    assert response.status_code == 200
    provider_a.refresh_from_db()
    assert (provider_a.api_base_url, provider_a.api_key) == ("https://rws.example.com", "sk-new")


def test_carrier_url_must_be_https_except_on_loopback(api, provider_a):
    response = patch(api, "provider-detail", {"api_base_url": "http://rws.example.com", "api_key": "sk-x"}, pk=provider_a.pk)
    assert response.status_code == 400 and "api_base_url" in response.json()["error"]["fields"]
    response = patch(api, "provider-detail", {"api_base_url": "http://127.0.0.1:9000", "api_key": "sk-x"}, pk=provider_a.pk)
    assert response.status_code == 200


# -- query counts: the same for 3 rows as for 30 ---------------------------------------------------------------

def test_provider_list_queries_do_not_grow_with_the_accounts(list_queries, provider_a, tenant_a):
    url = reverse("api:provider-list")
    for _ in range(2):
        ServiceProviderFactory(tenant=tenant_a)
    few = list_queries(url)
    for _ in range(27):
        ServiceProviderFactory(tenant=tenant_a)
    many = list_queries(url)
    assert (few[1], many[1]) == (3, 30)
    assert few[0] == many[0] <= 3, (few, many)  # token, count, page


def test_rate_plan_list_queries_do_not_grow_with_the_plans(list_queries, provider_a):
    url = reverse("api:rate-plan-list")
    for _ in range(3):
        RatePlanFactory(provider=provider_a)
    few = list_queries(url)
    for _ in range(27):
        RatePlanFactory(provider=provider_a)
    many = list_queries(url)
    assert (few[1], many[1]) == (3, 30)
    assert few[0] == many[0] <= 3, (few, many)


def test_communication_plan_list_queries_do_not_grow_with_the_plans(list_queries, provider_a):
    url = reverse("api:communication-plan-list")
    plans = [RatePlanFactory(provider=provider_a) for _ in range(5)]
    for i in range(3):
        CommunicationPlanFactory(provider=provider_a, rate_plans=plans[: i % 5 + 1])
    few = list_queries(url)
    for i in range(27):
        CommunicationPlanFactory(provider=provider_a, rate_plans=plans[: i % 5 + 1])
    many = list_queries(url)
    assert (few[1], many[1]) == (3, 30)
    assert few[0] == many[0] <= 4, (few, many)  # token, count, page, the allowed rate plans


def test_provider_pooling_defaults_to_per_group_and_takes_the_three_rules(api, provider_a):
    assert api.get(reverse("api:provider-detail", kwargs={"pk": provider_a.pk})).json()["pooling"] == "group"
    for rule in ("customer", "account", "group"):
        response = patch(api, "provider-detail", {"pooling": rule}, pk=provider_a.pk)
        assert response.status_code == 200 and response.json()["pooling"] == rule, response.content
        provider_a.refresh_from_db()
        assert provider_a.pooling == rule
    response = patch(api, "provider-detail", {"pooling": "tenant"}, pk=provider_a.pk)
    assert response.status_code == 400 and list(response.json()["error"]["fields"]) == ["pooling"]


@pytest.mark.parametrize("body, field", [
    ({"name": 0}, "name"),                          # a number is not a name (DRF would store "0")
    ({"name": "   "}, "name"),                      # blank once trimmed
    ({"active": "yes"}, "active"),                  # not a JSON boolean
    ({"max_concurrency": "2"}, "max_concurrency"),  # not a JSON number
    ({"max_concurrency": 40000}, "max_concurrency"),
    ({"rate_limit_per_second": 5}, "rate_limit_per_second"),   # decimals travel as strings
    ({"rate_limit_per_second": ""}, "rate_limit_per_second"),
    ({"rate_limit_per_second": "0"}, "rate_limit_per_second"),  # must be positive
    ({"rate_limit_per_second": "1e3"}, "rate_limit_per_second"),
    ({"billing_timezone": ""}, "billing_timezone"),
    ({"rate_limt_per_second": "5"}, "rate_limt_per_second"),   # a typo is refused, not ignored
])
def test_provider_update_refuses_what_the_schema_refuses(api, provider_a, body, field):
    response = patch(api, "provider-detail", body, pk=provider_a.pk)
    assert response.status_code == 400, (body, response.content)
    assert list(response.json()["error"]["fields"]) == [field]
    before = ServiceProvider.objects.get(pk=provider_a.pk)
    assert (before.name, before.max_concurrency, before.rate_limit_per_second) == (
        provider_a.name, provider_a.max_concurrency, provider_a.rate_limit_per_second)


@pytest.mark.parametrize("query", ["page_size=null", "page_size=0", "page_size=1001", "page_size=", "page=last",
                                   "page=", "page=0", "provider=99999999999999999999"])
def test_list_parameters_outside_the_schema_are_a_400_naming_them(api, provider_a, query):
    response = api.get(reverse("api:rate-plan-list") + "?" + query)
    assert response.status_code == 400, (query, response.content)
    assert list(response.json()["error"]["fields"]) == [query.partition("=")[0]]


@pytest.mark.parametrize("integration", ["Telegence", "ThingSpace"])
def test_an_integration_that_cannot_be_synced_cannot_be_chosen(api, tenant_a, provider_a, integration):
    response = post(api, "provider-list", {**NEW_PROVIDER, "integration": integration, "tenant": tenant_a.pk})
    assert response.status_code == 400
    errors = response.json()["error"]["fields"]["integration"]
    assert errors == [f"{integration} accounts cannot be synced by carrieropt yet, so optimization is not available "
                      f"for them; choose one of the Jasper family (Jasper, POD19, TMobileJasper, Rogers)."]
    assert not ServiceProvider.objects.filter(integration=integration).exists()
    url = reverse("api:provider-detail", kwargs={"pk": provider_a.pk})
    response = api.patch(url, {"integration": integration, "api_key": "sk-again"}, content_type="application/json")
    assert response.status_code == 400 and "optimization is not available" in response.content.decode()
    provider_a.refresh_from_db()
    assert provider_a.integration == "Jasper"
