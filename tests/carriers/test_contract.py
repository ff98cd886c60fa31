"""Contract tests: the request and answer shapes Cisco publishes for Control Center's REST API
(developer.cisco.com/docs/control-center/: search-devices, get-device-details, get-device-usage,
edit-device-details, get-rate-plans, get-usage-by-rate-plan, get-device-usage-by-zone, echo, and the error body of
rest-api-troubleshooting-checklist), written down here from those pages and checked against the simulator, so a
drift of the simulator (and of the client tested against it) from the documented API fails here. Answer fields the
pages do not spell out (carriers/README.md, "Unconfirmed") are not asserted beyond their presence."""
import datetime as dt
import re
import threading
import time
import zoneinfo

import httpx
import pytest

from carriers import CarrierAccountError, CarrierNotFound, CarrierProtocolError, CarrierRequestRejected, JasperClient
from carriers.simulator import Faults
from carriers.simulator import fleet as demo_fleet
from devices.testing import fast_client, simulated_provider
from rateplans.cycles import cycle_bounds

AUTH = (demo_fleet.DEMO_USERNAME, demo_fleet.DEMO_API_KEY)
SINCE = "2000-01-01T00:00:00+00:00"
CC_DATE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3}\+0000$")  # "Date Formats": 2016-06-08 20:34:37.573+0000
ERROR_CODE = re.compile(r"^\d{8}$")

# Return values each page lists (ours, from the pages' tables).
SEARCH_DEVICES = {"devices": list, "pageNumber": int, "lastPage": bool}
SEARCH_DEVICE_ENTRY = {"iccid", "status", "ratePlan", "communicationPlan"}
DEVICE_DETAILS = {"iccid", "imsi", "msisdn", "imei", "status", "ratePlan", "communicationPlan", "customer",
                  "endConsumerId", "dateActivated", "dateUpdated", "dateShipped", "accountId", "fixedIPAddress"}
CTD_USAGE = {"iccid": str, "imsi": str, "msisdn": str, "imei": str, "status": str, "ratePlan": str,
             "communicationPlan": str, "ctdDataUsage": int, "ctdSMSUsage": int, "ctdVoiceUsage": int,
             "ctdSessionCount": int, "overageLimitReached": bool, "overageLimitOverride": str}
SIM_STATUS_VALUES = {"ACTIVATED", "ACTIVATION_READY", "DEACTIVATED", "INVENTORY", "RETIRED", "TEST_READY", "PURGED",
                     "REPLACED"}


def api(server, **kwargs):
    return httpx.Client(base_url=f"{server.url}/rws/api/v1", auth=AUTH, timeout=5, **kwargs)


def assert_error(response, status, code):
    body = response.json()
    assert response.status_code == status, body
    assert set(body) == {"errorMessage", "errorCode"} and isinstance(body["errorMessage"], str)
    assert ERROR_CODE.match(body["errorCode"]) and body["errorCode"] == code, body


def shaped(body, spec):
    for key, kind in spec.items():
        assert key in body, key
        assert isinstance(body[key], kind) and not (kind is int and isinstance(body[key], bool)), (key, body[key])


# -- Search Devices --------------------------------------------------------------------------------------------

def test_search_devices_answers_the_documented_shape_oldest_change_first(carrier_simulator):
    with api(carrier_simulator) as c:
        body = c.get("/devices", params={"modifiedSince": SINCE, "pageSize": 50, "pageNumber": 1}).json()
        default = c.get("/devices", params={"modifiedSince": SINCE}).json()
    shaped(body, SEARCH_DEVICES)
    assert len(body["devices"]) == 50 and body["pageNumber"] == 1 and body["lastPage"] is False
    assert all(set(d) >= SEARCH_DEVICE_ENTRY and d["status"] in SIM_STATUS_VALUES for d in body["devices"])
    assert default == body  # pageSize defaults to 50, pageNumber to 1
    updated = [carrier_simulator.carrier.device(d["iccid"])["dateUpdated"] for d in body["devices"]]
    assert updated == sorted(updated)


def test_search_devices_filters_by_status_and_takes_the_own_account_id(carrier_simulator):
    with api(carrier_simulator) as c:
        pages, number = [], 1
        while True:
            page = c.get("/devices", params={"modifiedSince": SINCE, "status": "DEACTIVATED", "pageNumber": number,
                                             "accountId": "100020620"}).json()
            pages.append(page)
            if page["lastPage"]:
                break
            number += 1
    served = {d["iccid"] for p in pages for d in p["devices"]}
    expected = {i for i, (s, _, _) in carrier_simulator.carrier.snapshot().items() if s == "DEACTIVATED"}
    assert served == expected and expected


@pytest.mark.parametrize(("params", "code"), [
    ({}, "10000003"),  # modifiedSince is required
    ({"modifiedSince": SINCE, "pageSize": 51}, "10000003"),  # at most 50
    ({"modifiedSince": SINCE, "iccid": "1"}, "10000028"),  # not a parameter of the function
    ({"modifiedSince": SINCE, "accountId": "999"}, "10000030"),  # not the user's account
])
def test_search_devices_refuses_what_the_page_does_not_allow(carrier_simulator, params, code):
    with api(carrier_simulator) as c:
        assert_error(c.get("/devices", params=params), 400, code)


def test_the_api_version_is_part_of_the_path(carrier_simulator):
    response = httpx.get(f"{carrier_simulator.url}/rws/api/v2/devices", params={"modifiedSince": SINCE}, auth=AUTH)
    assert_error(response, 400, "10000024")


def test_bad_credentials_are_401_with_10000001(carrier_simulator):
    response = httpx.get(f"{carrier_simulator.url}/rws/api/v1/echo/x", auth=(demo_fleet.DEMO_USERNAME, "wrong"))
    assert_error(response, 401, "10000001")


# -- Get Device Details / Get Device Usage -----------------------------------------------------------------------

def test_device_details_and_ctd_usage_answer_the_documented_fields(carrier_simulator):
    iccid = sorted(carrier_simulator.carrier.snapshot())[0]
    with api(carrier_simulator) as c:
        details = c.get(f"/devices/{iccid}").json()
        usage = c.get(f"/devices/{iccid}/ctdUsages").json()
        unknown = c.get("/devices/8901269999999999999")
    assert set(details) >= DEVICE_DETAILS and details["iccid"] == iccid
    assert CC_DATE.match(details["dateActivated"]) and CC_DATE.match(details["dateUpdated"])
    shaped(usage, CTD_USAGE)
    assert usage["iccid"] == iccid and usage["ctdDataUsage"] >= 0  # bytes
    assert usage["overageLimitOverride"] in {"DEFAULT", "TEMPORARY_OVERRIDE", "PERMANENT_OVERRIDE"}
    assert_error(unknown, 404, "20000001")


def test_the_client_reads_every_documented_answer(tenant, carrier_simulator):
    provider = simulated_provider(server=carrier_simulator, tenant=tenant)
    iccid = sorted(carrier_simulator.carrier.snapshot())[0]
    with fast_client(provider) as client:
        page = client.list_devices_page(modified_since=dt.datetime(2000, 1, 1, tzinfo=dt.UTC), page_number=1)
        details = client.get_device(iccid)
        usage = client.get_ctd_usage(iccid)
    assert len(page.devices) == 50 and all(d.iccid and d.status and d.rate_plan for d in page.devices)
    assert details.iccid == iccid and details.date_updated.tzinfo is not None
    expected = carrier_simulator.carrier.ctd_bytes(iccid, at=usage.measured_at.timestamp())
    assert abs(usage.ctd_bytes - expected) <= max(1, expected * 1e-4)  # cycle to date grows by the second


# -- Edit Device Details -----------------------------------------------------------------------------------------

def a_sim_of(carrier, comm):
    return next(c for c, (s, _, cp) in sorted(carrier.snapshot().items()) if cp == comm and s == "ACTIVATED")


def test_edit_device_takes_the_documented_fields_and_answers_the_iccid(carrier_simulator):
    carrier = carrier_simulator.carrier
    iccid = a_sim_of(carrier, "CP-Fleet-Standard")
    edits = {"communicationPlan": "CP-Video-High", "ratePlan": "M2M-2GB", "overageLimitOverride": "TEMPORARY_OVERRIDE",
             "customer": "Acme", "deviceID": "truck-7", "modemID": "m-1", "accountCustom1": "depot 4"}
    with api(carrier_simulator) as c:
        response = c.put(f"/devices/{iccid}", json=edits)
        details = c.get(f"/devices/{iccid}").json()
        usage = c.get(f"/devices/{iccid}/ctdUsages").json()
    assert response.status_code == 200 and response.json() == {"iccid": iccid}
    assert (details["communicationPlan"], details["ratePlan"]) == ("CP-Video-High", "M2M-2GB")
    assert usage["overageLimitOverride"] == "TEMPORARY_OVERRIDE"
    assert carrier.changes[-1]["edits"] == edits


@pytest.mark.parametrize(("body", "code"), [
    ({}, "10000003"),  # at least one editable field is required
    ({"ratePlan": "M2M-5MB", "imsi": "1"}, "10000028"),
    ({"status": "SLEEPING"}, "10000013"),
    ({"overageLimitOverride": "ALWAYS"}, "10000013"),
    ({"ratePlan": "M2M-10GB"}, "10000014"),  # not in the SIM's communication plan
])
def test_edit_device_refuses_what_the_page_does_not_allow_and_changes_nothing(carrier_simulator, body, code):
    carrier = carrier_simulator.carrier
    iccid = a_sim_of(carrier, "CP-Telemetry-Low")
    before = carrier.device(iccid)
    with api(carrier_simulator) as c:
        assert_error(c.put(f"/devices/{iccid}", json=body), 400, code)
        assert_error(c.put(f"/devices/{iccid}", content=b"{not json", headers={"Content-Type": "application/json"}),
                     400, "10000023")
    assert carrier.device(iccid) == before and carrier.changes == []


def test_a_future_effective_date_is_scheduled_and_more_than_180_days_is_refused(carrier_simulator_factory):
    now = [time.time()]
    server = carrier_simulator_factory(sims=50, clock=lambda: now[0])
    carrier = server.carrier
    iccid = a_sim_of(carrier, "CP-Fleet-Standard")
    old = carrier.device(iccid)["ratePlan"]
    new = next(p for p in demo_fleet.COMMUNICATION_PLANS[1].rate_plans if p != old)
    today = dt.datetime.fromtimestamp(now[0], zoneinfo.ZoneInfo(demo_fleet.DEMO_TIMEZONE)).date()
    with api(server) as c:
        too_far = c.put(f"/devices/{iccid}", json={"ratePlan": new, "effectiveDate": str(today + dt.timedelta(days=181))})
        assert_error(too_far, 400, "10000013")
        soon = c.put(f"/devices/{iccid}", json={"ratePlan": new, "effectiveDate": str(today + dt.timedelta(days=10))})
        assert soon.status_code == 200 and soon.json() == {"iccid": iccid}
        assert c.get(f"/devices/{iccid}").json()["ratePlan"] == old  # not yet
        now[0] += 11 * 86_400
        assert c.get(f"/devices/{iccid}").json()["ratePlan"] == new  # the day came
    assert carrier.changes[-1]["effectiveDate"] == str(today + dt.timedelta(days=10))


# -- Get Rate Plans, Get Usage by Rate Plan, Get Device Usage by Zone, Echo, sessionInfo -----------------------

def test_rate_plans_are_paged_and_shared_is_refused_for_account_users(carrier_simulator):
    with api(carrier_simulator) as c:
        first = c.get("/rateplans", params={"pageSize": 5}).json()
        last = c.get("/rateplans", params={"pageSize": 5, "pageNumber": 3}).json()
        assert_error(c.get("/rateplans", params={"shared": "true"}), 400, "10000028")
    shaped(first, {"ratePlans": list, "pageNumber": int, "lastPage": bool})
    assert len(first["ratePlans"]) == 5 and first["lastPage"] is False and last["lastPage"] is True
    assert all({"name", "type"} <= set(p) for p in first["ratePlans"])


def test_usage_by_rate_plan_is_paged_and_refuses_shared_plans(carrier_simulator):
    carrier = carrier_simulator.carrier
    plan = "M2M-5MB"
    on_plan = {c for c, (_, p, _) in carrier.snapshot().items() if p == plan}
    with api(carrier_simulator) as c:
        pages, number = [], 1
        while True:
            page = c.get("/usages", params={"ratePlanName": plan, "pageSize": 10, "pageNumber": number}).json()
            pages.append(page)
            if page["lastPage"]:
                break
            number += 1
        assert_error(c.get("/usages", params={"ratePlanName": "M2M-10MB-POOL"}), 400, "10000013")
        assert_error(c.get("/usages"), 400, "10000003")  # the rate plan name is required
        assert_error(c.get("/usages", params={"ratePlanName": plan, "cycleStartDate": "1999-01-01"}), 400, "10000003")
    assert {d["iccid"] for p in pages for d in p["devices"]} == on_plan and len(pages) > 1
    for d in (d for p in pages for d in p["devices"]):
        expected = carrier.ctd_bytes(d["iccid"])  # cycle to date, in bytes, like ctdUsages
        assert abs(d["dataUsage"] - expected) <= max(1, expected * 1e-4), d


def test_usage_in_zone_takes_one_of_the_last_three_cycle_starts(carrier_simulator):
    carrier = carrier_simulator.carrier
    iccid = sorted(carrier.snapshot())[0]
    today = dt.datetime.now(zoneinfo.ZoneInfo(demo_fleet.DEMO_TIMEZONE)).date()
    current = cycle_bounds(today, demo_fleet.DEMO_CYCLE_END_DAY)[0]
    previous = cycle_bounds(current - dt.timedelta(days=1), demo_fleet.DEMO_CYCLE_END_DAY)[0]
    with api(carrier_simulator) as c:
        now = c.get(f"/devices/{iccid}/usageInZone").json()
        before = c.get(f"/devices/{iccid}/usageInZone", params={"cycleStartDate": f"{previous}Z"}).json()
        too_old = c.get(f"/devices/{iccid}/usageInZone", params={"cycleStartDate": "2001-01-01Z"})
    assert now["iccid"] == iccid and now["cycleStartDate"] == f"{current}Z"
    assert before["cycleStartDate"] == f"{previous}Z"
    plan = carrier.device(iccid)["ratePlan"]
    full = before["deviceCycleUsageInZones"][plan][0]["dataUsage"]
    assert full >= now["deviceCycleUsageInZones"][plan][0]["dataUsage"]  # a whole cycle, not cycle to date
    assert_error(too_old, 400, "10000003")


# -- Usage of an ended cycle (the calls that take cycleStartDate) -------------------------------------------------
# get-usage-by-rate-plan: cycleStartDate is yyyy-MM-dd and asks for "a past billing cycle"; get-device-usage-by-zone:
# cycleStartDate is yyyy-MM-ddZ and must be one of the last three cycles; usage is broken down by rate plan and zone.
# A rate plan change is billed for the whole cycle it happens in, so an ended cycle's usage is under the plan the SIM
# had at the cycle's end, and it is the whole cycle's usage (not cycle to date).

TZ = zoneinfo.ZoneInfo(demo_fleet.DEMO_TIMEZONE)
DEC_10 = dt.datetime(2026, 12, 10, 12, tzinfo=TZ).timestamp()
JAN_5 = dt.datetime(2027, 1, 5, 12, tzinfo=TZ).timestamp()


@pytest.fixture
def ended_cycle(carrier_simulator_factory):
    """A simulator on 10 December (one SIM moved then), then on 5 January (another SIM moved then)."""
    moment = [DEC_10]
    server = carrier_simulator_factory(sims=120, seed=11, clock=lambda: moment[0])
    carrier = server.carrier
    moved_in_dec = a_sim_of(carrier, "CP-Telemetry-Low")
    moved_in_jan = next(c for c, (s, p, cp) in sorted(carrier.snapshot().items())
                        if p == "M2M-5MB" and s == "ACTIVATED" and c != moved_in_dec)
    dec_plan = {c: p for c, (_, p, _) in carrier.snapshot().items()}
    with api(server) as c:
        december_ctd = c.get(f"/devices/{moved_in_dec}/usageInZone").json()
        assert c.put(f"/devices/{moved_in_dec}", json={"ratePlan": "M2M-25MB"}).status_code == 200
        moment[0] = JAN_5
        assert c.put(f"/devices/{moved_in_jan}", json={"ratePlan": "M2M-25MB"}).status_code == 200
    dec_plan[moved_in_dec] = "M2M-25MB"  # moved during December: billed on it for December
    return server, dec_plan, moved_in_dec, moved_in_jan, december_ctd


def test_usage_by_rate_plan_of_an_ended_cycle_lists_the_plan_at_its_end_with_the_whole_cycle(ended_cycle):
    server, dec_plan, moved_in_dec, moved_in_jan, _ = ended_cycle
    carrier = server.carrier
    served = {}
    with api(server) as c:
        for plan in ("M2M-5MB", "M2M-25MB"):
            number = 1
            while True:
                page = c.get("/usages", params={"ratePlanName": plan, "cycleStartDate": "2026-12-01",
                                                "pageSize": 7, "pageNumber": number}).json()
                shaped(page, {"devices": list, "pageNumber": int, "lastPage": bool})
                assert page["cycleStartDate"] == "2026-12-01"
                served.update({d["iccid"]: (plan, d["dataUsage"]) for d in page["devices"]})
                if page["lastPage"]:
                    break
                number += 1
        now = c.get("/usages", params={"ratePlanName": "M2M-25MB"}).json()  # without a date: this cycle to date
        assert_error(c.get("/usages", params={"ratePlanName": "M2M-5MB", "cycleStartDate": "2026-12-01Z"}), 400,
                     "10000003")  # yyyy-MM-dd here, not the usageInZone format
    assert {i for i, (p, _) in served.items()} == {i for i, p in dec_plan.items() if p in ("M2M-5MB", "M2M-25MB")}
    assert served[moved_in_dec][0] == "M2M-25MB" and served[moved_in_jan][0] == dec_plan[moved_in_jan] != "M2M-25MB"
    for iccid, (_, data) in served.items():
        assert data == int(carrier.cycle_usage_mb[carrier.index[iccid]] * 1024 * 1024), iccid  # bytes, whole cycle
    assert now["cycleStartDate"] == "2027-01-01" and moved_in_jan in {d["iccid"] for d in now["devices"]}


def test_usage_in_zone_of_an_ended_cycle_is_the_whole_cycle_by_the_plan_at_its_end(ended_cycle):
    server, dec_plan, moved_in_dec, moved_in_jan, december_ctd = ended_cycle
    carrier = server.carrier
    with api(server) as c:
        ended = c.get(f"/devices/{moved_in_dec}/usageInZone", params={"cycleStartDate": "2026-12-01Z"}).json()
        other = c.get(f"/devices/{moved_in_jan}/usageInZone", params={"cycleStartDate": "2026-12-01Z"}).json()
        current = c.get(f"/devices/{moved_in_jan}/usageInZone").json()
        assert_error(c.get(f"/devices/{moved_in_dec}/usageInZone", params={"cycleStartDate": "2026-10-01Z"}), 400,
                     "10000003")  # older than the last three cycles (Jan, Dec, Nov)
        assert c.get(f"/devices/{moved_in_dec}/usageInZone", params={"cycleStartDate": "2026-11-01Z"}).status_code == 200
    assert ended["iccid"] == moved_in_dec and ended["cycleStartDate"] == "2026-12-01Z"
    assert list(ended["deviceCycleUsageInZones"]) == ["M2M-25MB"]
    whole = int(carrier.cycle_usage_mb[carrier.index[moved_in_dec]] * 1024 * 1024)
    assert sum(z["dataUsage"] for z in ended["deviceCycleUsageInZones"]["M2M-25MB"]) == whole
    # On 10 December the same SIM had used its curve's share of the cycle so far, under the plan it had then.
    (plan_then, zones_then), = december_ctd["deviceCycleUsageInZones"].items()
    assert december_ctd["cycleStartDate"] == "2026-12-01Z" and plan_then != "M2M-25MB"
    assert 0 <= zones_then[0]["dataUsage"] <= whole
    assert list(other["deviceCycleUsageInZones"]) == [dec_plan[moved_in_jan]]
    assert list(current["deviceCycleUsageInZones"]) == ["M2M-25MB"] and current["cycleStartDate"] == "2027-01-01Z"


def test_the_client_reads_an_ended_cycle_and_refuses_other_cycles(tenant, ended_cycle):
    server, dec_plan, moved_in_dec, _, _ = ended_cycle
    carrier = server.carrier
    provider = simulated_provider(server=server, tenant=tenant)
    december = dt.date(2026, 12, 1)
    with fast_client(provider) as client:
        pages = list(client.iter_rate_plan_usages(rate_plan="M2M-25MB", cycle_start=december, page_size=5))
        one = client.get_cycle_usage(moved_in_dec, cycle_start=december)
        with pytest.raises(CarrierRequestRejected, match="refused the rate plan"):
            client.rate_plan_usage_page(rate_plan="M2M-10MB-POOL", cycle_start=december, page_number=1)
        with pytest.raises(CarrierAccountError, match="10000003"):
            client.get_cycle_usage(moved_in_dec, cycle_start=dt.date(2026, 9, 1))
        answers = dict(client.iter_cycle_usages([moved_in_dec, "8901269999999999999"], cycle_start=december))
    got = {u.iccid: u for p in pages for u in p.usages}
    assert set(got) == {i for i, p in dec_plan.items() if p == "M2M-25MB"} and pages[-1].last_page
    assert all(u.rate_plan == "M2M-25MB" and u.cycle_start == december and not p.problems
               for p in pages for u in p.usages)
    whole = int(carrier.cycle_usage_mb[carrier.index[moved_in_dec]] * 1024 * 1024)
    assert (one.data_bytes, one.rate_plan, one.cycle_start) == (whole, "M2M-25MB", december)
    assert got[moved_in_dec] == one
    assert answers[moved_in_dec] == one and isinstance(answers["8901269999999999999"], CarrierNotFound)


def test_the_client_refuses_usage_of_a_cycle_it_did_not_ask_for(tenant):
    def carrier(request):
        if request.url.path.endswith("/usageInZone"):
            return httpx.Response(200, json={"iccid": "8901260000000000001", "cycleStartDate": "2027-01-01Z",
                                             "deviceCycleUsageInZones": {"P": [{"zone": "Home", "dataUsage": 5}]}})
        return httpx.Response(200, json={"cycleStartDate": "2026-12-01", "pageNumber": 1, "lastPage": True,
                                         "devices": [{"iccid": "8901260000000000001", "dataUsage": -1},
                                                     {"iccid": "8901260000000000002", "dataUsage": 7}]})

    client = JasperClient(base_url="http://carrier.invalid", username="u", api_key="k", label="test", rate_limit=100,
                          max_concurrency=1, max_pages=5, transport=httpx.MockTransport(carrier))
    with client:
        with pytest.raises(CarrierProtocolError, match="answered the cycle starting 2027-01-01"):
            client.get_cycle_usage("8901260000000000001", cycle_start=dt.date(2026, 12, 1))
        page = client.rate_plan_usage_page(rate_plan="P", cycle_start=dt.date(2026, 12, 1), page_number=1)
    assert [u.iccid for u in page.usages] == ["8901260000000000002"]
    assert len(page.problems) == 1 and "dataUsage -1" in page.problems[0]


def test_echo_and_session_info(carrier_simulator):
    iccid = sorted(carrier_simulator.carrier.snapshot())[0]
    with api(carrier_simulator) as c:
        assert c.get("/echo/hello-world").json() == {"context": "hello-world"}
        session = c.get(f"/devices/{iccid}/sessionInfo").json()
    assert session["iccid"] == iccid and {"ipAddress", "dateSessionStarted", "dateSessionEnded"} <= set(session)


# -- Limits -------------------------------------------------------------------------------------------------------

def test_calls_are_counted_per_account_in_one_second_windows(carrier_simulator_factory):
    server = carrier_simulator_factory(sims=10, faults=Faults(rate_limit=3))
    with api(server) as c:
        time.sleep(1 - time.monotonic() % 1 + 0.01)  # at the start of a window
        first = [c.get("/echo/x").status_code for _ in range(4)]
        time.sleep(1 - time.monotonic() % 1 + 0.01)
        second = c.get("/echo/x")
    assert first[:3] == [200, 200, 200] and first[3] == 400 and second.status_code == 200


def test_a_second_call_in_flight_is_refused_when_asked(carrier_simulator_factory):
    server = carrier_simulator_factory(sims=10, faults=Faults(max_in_flight=1, latency_ms=300))
    results = []

    def call():
        with api(server) as c:
            results.append(c.get("/echo/x"))

    threads = [threading.Thread(target=call) for _ in range(2)]
    for t in threads:
        t.start()
        time.sleep(0.05)
    for t in threads:
        t.join()
    assert sorted(r.status_code for r in results) == [200, 400]
    assert_error(next(r for r in results if r.status_code == 400), 400, "40000029")
