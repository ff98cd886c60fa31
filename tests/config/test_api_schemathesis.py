"""schemathesis, every check (`--checks all`), against the live server (pytest-django's live_server, on loopback)
as a tenant user: no server error, no schema mismatch.

Alice (tenant A) makes the requests; Bob (tenant B) is her peer, so object_level_authorization replays her reads
as him. Bounded: a few examples per operation and a fixed seed, so it takes well under a minute on two cores.
The coverage phase (every boundary and negative case the schema defines, ~4,000 requests: minutes, and not
boundable by an example count) is left to a full run on demand:

    SCHEMATHESIS_PHASES=examples,coverage,fuzzing,stateful SCHEMATHESIS_EXAMPLES=30 \\
        DEBUG=1 .venv/bin/python -m pytest tests/config/test_api_schemathesis.py
"""
import json
import os
import re
import subprocess
import sys
import time

import pytest

from devices.models import DevicePin
from pushes.models import RatePlanPush
from tests.factories_results import ProgressEventFactory, session_with_results, token_for
from tests.report_storage import use_report_folder

EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "3"))
PHASES = os.environ.get("SCHEMATHESIS_PHASES", "examples,fuzzing,stateful")
SEED = os.environ.get("SCHEMATHESIS_SEED", "1")


def _tenant_rows(provider) -> dict:
    """A finished session with results (the real pipeline on a small fleet), a pin and a push: real rows that
    generated requests reach, by id or GUID, in paths and bodies."""
    session = session_with_results(provider=provider, groups=1, sims_per_group=2)
    ProgressEventFactory(session=session, progress=100)
    run = session.run
    assignment = run.assignments.select_related("device").first()
    push = RatePlanPush.objects.create(
        provider=provider, session=session, status="no_go", decision="no_go",
        period_ends_at=session.billing_period.ends_at(), minutes_left=1, minutes_needed=2, rate_per_minute=60)
    pin = DevicePin.objects.create(device=run.assignments.exclude(pk=assignment.pk).first().device, reason="contract")
    return {"providers": provider.pk, "tenants": provider.tenant_id, "billing_periods": session.billing_period_id,
            "rate_plans": assignment.recommended_plan_id, "devices": assignment.device_id, "pins": pin.pk,
            "pushes": push.pk, "sessions": str(session.guid), "iccids": assignment.device.iccid,
            "communication_plans": run.comm_groups.get().communication_plans.get().pk}


# Where the real rows go: an id in the path of /api/<name>/{id}/, and the body fields that name a row.
PATH_IDS = {"providers": "id", "rate-plans": "id", "communication-plans": "id", "devices": "id", "pins": "id",
            "pushes": "id", "sessions": "guid"}
BODY_FIELDS = {"provider": "providers", "tenant": "tenants", "billing_period": "billing_periods",
               "rate_plans[*]": "rate_plans", "iccid": "iccids"}


def _config(auth, rows: list[dict]) -> str:
    """schemathesis.toml: alice's requests with bob as her peer; half of the ids it sends are real rows, of
    either tenant (the other half generated: mostly rows that do not exist)."""
    lines = ["[auth.wfc]", f"path = {json.dumps(str(auth))}", 'user = "alice"', 'peers = ["alice", "bob"]', ""]
    for name in rows[0]:
        lines += [f"[dictionaries.{name}]", f"values = {json.dumps([side[name] for side in rows])}", ""]
    binding = "{{ dictionary = {}, probability = 0.5 }}"
    lines += ["[parameters]", *(f'"body.{field}" = {binding.format(json.dumps(name))}'
                                for field, name in BODY_FIELDS.items()), ""]
    for prefix, parameter in PATH_IDS.items():
        name = prefix.replace("-", "_")
        lines += ["[[operations]]", f'include-path-regex = "^/api/{prefix}/[{{]"',
                  f'parameters = {{ "path.{parameter}" = {binding.format(json.dumps(name))} }}', ""]
    return "\n".join(lines)


@pytest.mark.slow
def test_api_conforms_to_its_schema_with_every_check(live_server, provider_a, provider_b, alice, bob, settings,
                                                     tmp_path):
    use_report_folder(settings, tmp_path / "reports")
    rows = [_tenant_rows(provider_a), _tenant_rows(provider_b)]
    auth = tmp_path / "auth.json"
    auth.write_text(json.dumps({"auth": [
        {"name": user.username, "fixedHeaders": [{"name": "Authorization", "value": f"Token {token_for(user)}"}]}
        for user in (alice, bob)]}))
    config = tmp_path / "schemathesis.toml"
    config.write_text(_config(auth, rows))
    command = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "--no-color",
        "run", f"{live_server.url}/api/schema/", "--checks", "all", "--phases", PHASES,
        "--max-examples", str(EXAMPLES), "--seed", SEED, "--workers", "1", "--generation-database", "none",
        "--max-failures", "20", "--request-timeout", "30",
    ]
    # cwd: schemathesis keeps a cache directory in the working directory.
    started = time.monotonic()
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True,
                            timeout=None if "coverage" in PHASES else 600)
    output = result.stdout + result.stderr
    print(output, f"schemathesis took {time.monotonic() - started:.1f} s")  # shown with -s, or -rP
    assert result.returncode == 0, output[-20000:]
    # Every operation of the schema was tested.
    counts = re.search(r"Selected: (\d+)/(\d+)\s+Tested: (\d+)", output)
    assert counts and counts[1] == counts[2] == counts[3] and int(counts[3]) >= 29, output[-5000:]
