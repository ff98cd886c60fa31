"""schemathesis against the OpenAPI schema with both tenants' tokens: no server error, no schema violation."""
import pytest
import schemathesis
from django.core import signals
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from config.wsgi import application
from tests.factories_results import ProgressEventFactory, session_with_results, token_for
from tests.report_storage import use_report_folder

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance]
# Bounded so the whole file runs in seconds on two cores; each example is sent six ways (below).
EXAMPLES = 8


# Loaded at collection through the WSGI app (the schema view touches no database). pytest-9
# breaks schemathesis' lazy from_fixture loader, so the schema is not loaded inside a fixture.
schema = schemathesis.openapi.from_wsgi("/api/schema/", application)


@pytest.fixture(autouse=True)
def _test_settings(settings, tmp_path):
    use_report_folder(settings, tmp_path)


@pytest.fixture(autouse=True)
def _keep_the_test_transaction():
    """Requests go through the bare WSGI app, whose request signals would close the connection
    holding the test's transaction (on PostgreSQL); Django's test client unhooks them the same way."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


def _side(provider, user):
    session = session_with_results(provider=provider, groups=1, sims_per_group=3)
    ProgressEventFactory(session=session, progress=100)
    run = session.run
    assignment = run.assignments.first()
    return {
        "token": token_for(user),
        # Real ids per path prefix, so generated requests also reach existing rows (own and foreign).
        "ids": {
            "/api/providers/": provider.pk,
            "/api/rate-plans/": assignment.recommended_plan_id,
            "/api/communication-plans/": run.comm_groups.get().communication_plans.get().pk,
            "/api/devices/": assignment.device_id,
            "/api/sessions/": str(session.guid),
        },
        # Real ids for the same names in request bodies, so creates and starts can succeed (201, then 409).
        "body": {"tenant": provider.tenant_id, "provider": provider.pk, "rate_plans": [assignment.recommended_plan_id]},
    }


@pytest.fixture
def sides(provider_a, provider_b, alice, bob):
    return [_side(provider_a, alice), _side(provider_b, bob)]


def _with_ids(case, ids: dict):
    if not case.path_parameters:
        return None
    prefix = next((p for p in ids if case.path.startswith(p)), None)
    if prefix is None:
        return None
    name = next(iter(case.path_parameters))
    return {**case.path_parameters, name: ids[prefix]}


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much])
def test_api_conforms_to_its_schema(case, sides):
    for caller in sides:
        headers = {"Authorization": f"Token {caller['token']}"}
        generated = case.path_parameters
        # As generated (mostly unknown ids), then on the caller's own rows, then on the other tenant's.
        for params in [generated, *[_with_ids(case, other["ids"]) for other in sides]]:
            if params is None:
                continue
            case.path_parameters = params
            response = case.call(headers=headers)
            case.validate_response(response, checks=CHECKS)
            foreign = params is not generated and params != _with_ids(case, caller["ids"])
            if foreign and case.method.upper() == case.operation.method.upper():
                # Another tenant's row: whatever the body or query, it does not exist for this caller.
                assert response.status_code == 404, (case.method, case.formatted_path, response.status_code)
        case.path_parameters = generated
        if isinstance(case.body, dict) and set(case.body) & set(caller["body"]):
            generated_body = case.body
            case.body = {**generated_body, **{k: v for k, v in caller["body"].items() if k in generated_body}}
            case.validate_response(case.call(headers=headers), checks=CHECKS)
            case.body = generated_body
