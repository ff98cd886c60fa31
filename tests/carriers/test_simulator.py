"""The carrier simulator speaks the Control Center API over real HTTP, deterministically, with faults on demand."""
import datetime as dt
import json
import math
import os
import re
import subprocess
import sys
import zoneinfo
from pathlib import Path

import httpx
import pytest

from carriers import BYTES_PER_MB
from carriers.simulator import Faults, carrier_date
from carriers.simulator import fleet as demo_fleet
from devices.demo import demo_seed
from devices.models import Device
from rateplans.cycles import cycle_bounds

SINCE = "2000-01-01T00:00:00+00:00"
AUTH = (demo_fleet.DEMO_USERNAME, demo_fleet.DEMO_API_KEY)


def api(server, **kwargs):
    return httpx.Client(base_url=f"{server.url}/rws/api/v1", auth=kwargs.pop("auth", AUTH), timeout=kwargs.pop("timeout", 5),
                        **kwargs)


def all_pages(client, *, since=SINCE, size=50):
    pages, number = [], 1
    while True:
        body = client.get("/devices", params={"modifiedSince": since, "pageSize": size, "pageNumber": number}).json()
        pages.append(body)
        if body["lastPage"]:
            return pages
        number += 1


def test_same_sims_as_seed_demo_for_the_same_seed(db, carrier_simulator_factory):
    server = carrier_simulator_factory(sims=60, seed=3)
    result = demo_seed(devices=60, seed=3)
    with api(server) as client:
        served = {(d["iccid"], d["status"], d["ratePlan"], d["communicationPlan"])
                  for page in all_pages(client) for d in page["devices"]}
    seeded = set(Device.objects.filter(provider=result.provider).values_list(
        "iccid", "status", "rate_plan_code", "communication_plan_name"))
    assert served == seeded and len(served) == 60
    assert result.provider.username == demo_fleet.DEMO_USERNAME and result.provider.api_key == demo_fleet.DEMO_API_KEY


def test_wrong_or_missing_credentials_get_401_with_the_carrier_error_body(carrier_simulator):
    for auth in [(demo_fleet.DEMO_USERNAME, "nope"), ("someone", demo_fleet.DEMO_API_KEY), None]:
        response = httpx.get(f"{carrier_simulator.url}/rws/api/v1/devices", params={"modifiedSince": SINCE}, auth=auth)
        assert response.status_code == 401
        assert response.json() == {"errorMessage": "Invalid username or API key.", "errorCode": "10000001"}


def test_paging_serves_every_sim_once_oldest_change_first(carrier_simulator_factory):
    server = carrier_simulator_factory(sims=230, seed=5)
    with api(server) as client:
        pages = all_pages(client)
    assert [p["pageNumber"] for p in pages] == [1, 2, 3, 4, 5]
    assert [p["lastPage"] for p in pages] == [False] * 4 + [True]
    iccids = [d["iccid"] for p in pages for d in p["devices"]]
    assert len(iccids) == len(set(iccids)) == 230
    dates = [server.carrier.date_updated[server.carrier.index[i]] for i in iccids]
    assert dates == sorted(dates)
    assert set(pages[0]["devices"][0]) == {"iccid", "status", "ratePlan", "communicationPlan"}


@pytest.mark.parametrize(("params", "message", "code"), [
    ({"pageSize": 51, "modifiedSince": SINCE}, "pageSize must be between 1 and 50.", "10000003"),
    ({"pageSize": 10}, "modifiedSince is required.", "10000003"),
    ({"modifiedSince": "last tuesday"}, "modifiedSince 'last tuesday' is not an ISO 8601 date.", "10000003"),
    ({"modifiedSince": SINCE, "sort": "iccid"}, "Unknown parameter(s): sort.", "10000028"),
    ({"modifiedSince": SINCE, "status": "SLEEPING"}, "Invalid status: 'SLEEPING'.", "10000013"),
    ({"modifiedSince": SINCE, "accountId": "42"}, "accountId '42' is not an account this user may see.", "10000030"),
])
def test_bad_list_parameters_get_400(carrier_simulator, params, message, code):
    with api(carrier_simulator) as client:
        response = client.get("/devices", params=params)
    assert response.status_code == 400 and response.json() == {"errorMessage": message, "errorCode": code}


def test_modified_since_filters(carrier_simulator_factory):
    server = carrier_simulator_factory(sims=300, seed=9)
    dates = sorted(server.carrier.date_updated)
    cutoff = dates[200]
    since = carrier_date(cutoff).replace(" ", "T").replace("+0000", "+00:00")
    with api(server) as client:
        served = [d["iccid"] for page in all_pages(client, since=since) for d in page["devices"]]
    assert len(served) == sum(1 for d in dates if d >= cutoff) == 100


def test_usage_grows_through_the_cycle_as_seed_demo_computes_it(carrier_simulator_factory):
    tz = zoneinfo.ZoneInfo(demo_fleet.DEMO_TIMEZONE)
    moment = [dt.datetime(2026, 11, 10, 12, tzinfo=tz).timestamp()]
    server = carrier_simulator_factory(sims=50, seed=4, clock=lambda: moment[0])
    carrier = server.carrier
    i = max(range(50), key=lambda k: carrier.cycle_usage_mb[k])
    iccid = carrier.iccids[i]
    with api(server) as client:
        early = client.get(f"/devices/{iccid}/ctdUsages").json()["ctdDataUsage"]
        moment[0] += 10 * 86_400
        late = client.get(f"/devices/{iccid}/ctdUsages").json()["ctdDataUsage"]
    start, end = cycle_bounds(dt.date(2026, 11, 20), demo_fleet.DEMO_CYCLE_END_DAY)
    starts = dt.datetime.combine(start, dt.time.min, tzinfo=tz)
    ends = dt.datetime.combine(end + dt.timedelta(days=1), dt.time.min, tzinfo=tz)
    fraction = (dt.datetime.fromtimestamp(moment[0], tz) - starts) / (ends - starts)
    trend = carrier.usage_trend(i, start)
    assert -0.95 <= trend <= 0.95
    assert late == math.floor(carrier.cycle_usage_mb[i] * fraction * (1 - trend * (1 - fraction)) * BYTES_PER_MB)
    assert 0 < early < late
    # At the cycle's end the curve reaches the SIM's whole cycle usage, whatever its trend.
    moment[0] = ends.timestamp() - 0.001
    assert carrier.ctd_bytes(iccid) == pytest.approx(carrier.cycle_usage_mb[i] * BYTES_PER_MB, rel=1e-6)


def test_usage_curves_differ_by_sim_and_cycle_so_a_linear_projection_misses(carrier_simulator_factory):
    carrier = carrier_simulator_factory(sims=400, seed=3).carrier
    november, december = dt.date(2026, 11, 1), dt.date(2026, 12, 1)
    trends = [carrier.usage_trend(i, november) for i in range(400)]
    assert len(set(trends)) == 400 and [carrier.usage_trend(i, november) for i in range(400)] == trends
    assert trends != [carrier.usage_trend(i, december) for i in range(400)]
    by_plan = {}
    for i, t in enumerate(trends):
        by_plan.setdefault(carrier.comm_plan[i], []).append(t)
    means = {plan: sum(ts) / len(ts) for plan, ts in by_plan.items()}
    # Video SIMs lean late in the cycle, fleet tracking early: per-group projection errors of opposite sign.
    assert means["CP-Video-High"] > 0.15 and means["CP-Fleet-Standard"] < -0.05


def test_rate_plan_change_is_kept_visible_and_logged(carrier_simulator):
    carrier = carrier_simulator.carrier
    iccid = next(c for c, (_, plan, comm) in sorted(carrier.snapshot().items())
                 if comm == "CP-Fleet-Standard" and plan != "M2M-25MB")
    before = carrier.device(iccid)["dateUpdated"]
    with api(carrier_simulator) as client:
        response = client.put(f"/devices/{iccid}", json={"ratePlan": "M2M-25MB", "effectiveDate": "2026-12-01"})
        assert response.status_code == 200 and response.json() == {"iccid": iccid}
        details = client.get(f"/devices/{iccid}").json()
        usage = client.get(f"/devices/{iccid}/ctdUsages").json()
        # A change moves the SIM to the end of the list: it is what modifiedSince=<just now> returns.
        since = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=30)).isoformat()
        recent = [d["iccid"] for page in all_pages(client, since=since) for d in page["devices"]]
    assert details["ratePlan"] == usage["ratePlan"] == "M2M-25MB" and details["dateUpdated"] > before
    assert recent == [iccid]
    logged = httpx.get(f"{carrier_simulator.url}/_sim/changes").json()["changes"]
    assert logged == carrier.changes and len(logged) == 1
    assert {k: logged[0][k] for k in ("iccid", "from", "to", "effectiveDate", "source")} == {
        "iccid": iccid, "from": carrier.changes[0]["from"], "to": "M2M-25MB", "effectiveDate": "2026-12-01",
        "source": "api"}


@pytest.mark.parametrize(("body", "message"), [
    ({"ratePlan": "NOPE"}, "Invalid rate plan: 'NOPE'."),
    ({"status": "SLEEPING"}, "Invalid status: 'SLEEPING'."),
    ({"effectiveDate": "2027-01-01"}, "At least one of status, ratePlan, communicationPlan, customer, deviceID, "
                                      "modemID, overageLimitOverride or a custom field is required."),
    ({"ratePlan": "M2M-5MB", "effectiveDate": "soon"}, "effectiveDate 'soon' is not a date (yyyy-MM-dd)."),
    ({"ratePlan": "M2M-5MB", "imsi": "1"}, "Unknown parameter(s): imsi."),
])
def test_bad_rate_plan_changes_get_400_and_change_nothing(carrier_simulator, body, message):
    iccid = sorted(carrier_simulator.carrier.snapshot())[0]
    with api(carrier_simulator) as client:
        response = client.put(f"/devices/{iccid}", json=body)
        unknown = client.get("/devices/8901260000000000000/ctdUsages")
    assert response.status_code == 400 and response.json()["errorMessage"] == message
    assert unknown.status_code == 404 and unknown.json()["errorCode"] == "20000001"
    assert carrier_simulator.carrier.changes == []


def test_duplicate_across_pages_repeats_boundary_sims_but_serves_all(carrier_simulator_factory):
    server = carrier_simulator_factory(sims=120, faults=Faults(duplicate_across_pages=True))
    with api(server) as client:
        pages = all_pages(client)
    iccids = [d["iccid"] for p in pages for d in p["devices"]]
    assert set(iccids) == set(server.carrier.iccids)
    assert pages[0]["devices"][-1]["iccid"] == pages[1]["devices"][0]["iccid"]
    assert len(iccids) - len(set(iccids)) == len(pages) - 1


def test_churn_between_pages_moves_changed_sims_to_the_end(carrier_simulator_factory):
    server = carrier_simulator_factory(sims=200, faults=Faults(churn=2))
    with api(server) as client:
        iccids = [d["iccid"] for p in all_pages(client) for d in p["devices"]]
    churned = {c["iccid"] for c in server.carrier.changes}
    assert churned and all(c["source"] == "churn between pages" for c in server.carrier.changes)
    assert len(iccids) > len(set(iccids))  # a changed SIM that was already served comes again at the end
    assert set(iccids) >= churned


def test_malformed_page_is_broken_json(carrier_simulator_factory):
    server = carrier_simulator_factory(sims=120, faults=Faults(malformed_page=2))
    with api(server) as client:
        response = client.get("/devices", params={"modifiedSince": SINCE, "pageNumber": 2})
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        response.json()


def test_error_rate_injects_500_429_and_hangs_in_short_bursts(carrier_simulator_factory):
    server = carrier_simulator_factory(sims=10, faults=Faults(error_rate=0.2, hang_seconds=0.05), fault_seed=3)
    statuses = []
    with api(server, timeout=2) as client:
        for _ in range(300):
            statuses.append(client.get(f"/devices/{server.carrier.iccids[0]}").status_code)
    faults = [s for s in statuses if s != 200]
    assert 30 <= len(faults) <= 90 and set(faults) == {500, 400, 504}  # 400 is throttling (errorCode 40000029)
    runs = re.findall(r"x+", "".join("x" if s != 200 else "." for s in statuses))
    assert max(map(len, runs)) <= 2


def test_rate_limit_answers_400_with_40000029_by_default_and_429_on_the_flag(carrier_simulator_factory):
    server = carrier_simulator_factory(sims=10, faults=Faults(rate_limit=3))
    with api(server) as client:
        responses = [client.get(f"/devices/{server.carrier.iccids[0]}") for _ in range(6)]
        throttled = [r for r in responses if r.status_code != 200]
        assert throttled and {r.status_code for r in throttled} == {400}
        assert throttled[0].json()["errorCode"] == "40000029"
        assert throttled[0].json()["errorMessage"] == "Rate Limit Exceeded (at most 3 calls per second)"
        server.carrier.faults.throttle_status = 429
        responses = [client.get(f"/devices/{server.carrier.iccids[0]}") for _ in range(8)]
    throttled = [r for r in responses if r.status_code != 200]
    assert throttled and {r.status_code for r in throttled} == {429}
    assert throttled[0].headers["Retry-After"] == "1" and throttled[0].json()["errorCode"] == "40000029"


def test_run_carrier_simulator_command_serves_over_http(tmp_path):
    env = {**os.environ, "DEBUG": "1", "CARRIEROPT_VAR_DIR": str(tmp_path)}
    manage = Path(__file__).resolve().parents[2] / "manage.py"
    process = subprocess.Popen([sys.executable, str(manage), "run_carrier_simulator", "--port", "0", "--sims", "30",
                                "--seed", "3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = process.stdout.readline()
        url = re.search(r"(http://127\.0\.0\.1:\d+)/rws/api/v1", line).group(1)
        stats = httpx.get(f"{url}/_sim/stats", timeout=5).json()
        page = httpx.get(f"{url}/rws/api/v1/devices", params={"modifiedSince": SINCE}, auth=AUTH, timeout=5).json()
    finally:
        process.terminate()
        rest, _ = process.communicate(timeout=10)
    assert "30 SIMs (seed 3)" in line
    assert "Stopped after 1 API calls." in rest and process.returncode == 0  # SIGTERM stops it cleanly
    assert stats["sims"] == 30 and stats["seed"] == 3
    assert len(page["devices"]) == 30 and page["lastPage"] is True


def test_the_clock_control_moves_the_account_past_a_cycle_end_and_never_back(carrier_simulator_factory):
    server = carrier_simulator_factory(sims=20, seed=2)
    iccid = server.carrier.iccids[0]
    target = (dt.datetime.now(dt.UTC) + dt.timedelta(days=40)).replace(microsecond=0)
    moved = httpx.post(f"{server.url}/_sim/clock", params={"at": target.isoformat()}).json()
    assert abs(dt.datetime.fromisoformat(moved["now"]) - target) < dt.timedelta(seconds=5)
    back = httpx.post(f"{server.url}/_sim/clock", params={"at": "2001-01-01T00:00:00+00:00"}).json()
    assert dt.datetime.fromisoformat(back["now"]) >= target
    assert httpx.post(f"{server.url}/_sim/clock", params={"at": "2030-01-01T00:00:00"}).status_code == 400
    local = target.astimezone(zoneinfo.ZoneInfo(demo_fleet.DEMO_TIMEZONE)).date()
    with httpx.Client(base_url=f"{server.url}/rws/api/v1", auth=(demo_fleet.DEMO_USERNAME, demo_fleet.DEMO_API_KEY)) as c:
        now = c.get(f"/devices/{iccid}/usageInZone").json()
    assert now["cycleStartDate"] == f"{cycle_bounds(local, demo_fleet.DEMO_CYCLE_END_DAY)[0]}Z"
