"""The simulated Control Center account: SIM state, the API's answers, fault injection, the change log."""
from __future__ import annotations

import base64
import binascii
import bisect
import datetime as dt
import hmac
import json
import math
import random
import threading
import time
import zoneinfo
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote

from carriers.base import BYTES_PER_MB
from carriers.simulator import fleet as demo_fleet
from rateplans.cycles import cycle_bounds

API_PREFIX = "/rws/api/v1"
MAX_PAGE_SIZE = 50

# The API as Cisco publishes it (developer.cisco.com/docs/control-center/): search-devices, get-device-details,
# get-device-usage (ctdUsages), edit-device-details, get-rate-plans, get-usage-by-rate-plan,
# get-device-usage-by-zone, echo, rest-api-troubleshooting-checklist. Errors are {"errorMessage", "errorCode"} with
# the codes below (carriers.errors.CONTROL_CENTER_ERRORS); shapes the pages do not spell out are marked
# "unconfirmed" here and in carriers/README.md.
ERROR_CODES = {
    "bad_credentials": "10000001",
    "missing_parameter": "10000003",  # e.g. modifiedSince missing or not a date
    "invalid_value": "10000013",  # unconfirmed: a value not valid for this SIM (unknown rate plan, status, ...)
    "not_allowed": "10000014",  # unconfirmed: a change this SIM cannot take (plan not in its communication plan)
    "bad_json": "10000023",
    "bad_api_version": "10000024",
    "unknown_parameter": "10000028",
    "no_access": "10000030",
    "invalid_iccid": "20000001",
    "internal": "30000001",
    "throttled": "40000029",
}
SIM_STATUSES = ("ACTIVATED", "ACTIVATION_READY", "DEACTIVATED", "INVENTORY", "RETIRED", "TEST_READY", "PURGED",
                "REPLACED")
OVERAGE_OVERRIDES = ("DEFAULT", "TEMPORARY_OVERRIDE", "PERMANENT_OVERRIDE")
EDITABLE = ("status", "ratePlan", "communicationPlan", "customer", "deviceID", "modemID", "overageLimitOverride",
            *(f"accountCustom{n}" for n in range(1, 11)))
ACCOUNT_ID = "100020620"
MAX_EFFECTIVE_DAYS = 180
FAULT_KINDS = ("500", "429", "timeout", "malformed")  # "429" is throttling, answered as throttle_status says
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
@dataclass
class Faults:
    """What the simulator does wrong on purpose. Mutable while it runs (tests flip it between calls)."""

    error_rate: float = 0.0  # share of API calls answered 500, throttled or left hanging (or broken JSON, if asked)
    fault_kinds: tuple[str, ...] = ("500", "429", "timeout")
    # Injected faults are transient blips: at most this many in a row (0 = no cap), so a
    # 10 % error rate does not trip the client's 5-failure breaker by chance. Outages are `outage`.
    fault_burst: int = 2
    hang_seconds: float = 5.0  # how long a "timeout" fault keeps the caller waiting
    latency_ms: float = 0.0  # added to every API call
    malformed_page: int | None = None  # this device-list page is answered with truncated JSON
    duplicate_across_pages: bool = False  # the last SIM of each page is repeated first on the next
    churn: int = 0  # SIMs changed after each device-list page is served
    rate_limit: float | None = None  # calls per account in each one-second window; throttled beyond
    throttle_status: int = 400  # how throttling is answered: 400 + errorCode 40000029 (as Cisco's answers are reported), or 429
    never_last_page: bool = False  # lastPage is always false (a carrier that never ends)
    outage: bool = False  # every API call answers 500
    max_in_flight: int | None = None  # a call beyond this many in flight for the account is refused as throttled
    # Limits the published pages do not state precisely (README: unconfirmed), off unless asked for:
    modified_since_max_days: int | None = None  # modifiedSince older than this is refused (10000003)
    no_access: tuple[str, ...] = ()  # functions the API user's role may not call (10000030): "rateplans", "usages", ...
    # The next calls' fate, in order: 500 / 429 (throttled) / timeout / malformed / ok, or "code:NNNNNNNN" to
    # answer with that Control Center errorCode (401 for 10000001, 403 for 10000030, 404 for 20000001, else 400).
    script: deque[str] = field(default_factory=deque)
    # ctdUsages of these ICCIDs is refused (HTTP 400, errorCode 10000013: about that SIM) every time, or only the
    # first time it is asked: a carrier whose usage service has no record of some SIMs, or stumbles on a few.
    # A SIM in usage_refused has no usage of any cycle: usageInZone refuses it too and /usages does not list it.
    usage_refused: frozenset[str] = frozenset()
    usage_refused_once: set[str] = field(default_factory=set)
    # Get Device Details of these ICCIDs is refused (HTTP 400, errorCode 10000013: about that SIM).
    details_refused: frozenset[str] = frozenset()

    def __post_init__(self):
        if not 0 <= self.error_rate <= 1:
            raise ValueError(f"error_rate must be within 0..1, got {self.error_rate}")
        unknown = set(self.fault_kinds) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"fault_kinds must be among {FAULT_KINDS}, got {sorted(unknown)}")


@dataclass(frozen=True)
class SimResponse:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()
    hang: float = 0.0  # wait this long, then answer (a caller with a shorter timeout sees a timeout)
    delay: float = 0.0


def _json(status: int, payload, headers: tuple[tuple[str, str], ...] = ()) -> SimResponse:
    return SimResponse(status, json.dumps(payload, separators=(",", ":")).encode(), headers)


def _error(status: int, kind: str | None, message: str, headers: tuple[tuple[str, str], ...] = ()) -> SimResponse:
    body = {"errorMessage": message}
    if kind is not None:
        body["errorCode"] = ERROR_CODES[kind]
    return _json(status, body, headers)


def carrier_date(epoch_ms: int) -> str:
    """Control Center's date format: 2016-06-08 20:34:37.573+0000."""
    moment = _EPOCH + dt.timedelta(milliseconds=epoch_ms)
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{epoch_ms % 1000:03d}+0000"


def epoch_ms_at_or_after(moment: dt.datetime) -> int:
    """The first whole millisecond at or after `moment`, exactly (no float rounding)."""
    micros = (moment - _EPOCH) // dt.timedelta(microseconds=1)
    return -(-micros // 1000)


class _Window:
    """Server-side rate limit: at most `rate` calls of an account in each one-second window."""

    def __init__(self, rate: float, clock: Callable[[], float]):
        self.rate, self.clock = rate, clock
        self.second, self.count = None, 0

    def take(self) -> bool:
        second = math.floor(self.clock())
        if second != self.second:
            self.second, self.count = second, 0
        if self.count + 1 > self.rate:
            return False
        self.count += 1
        return True


class SimulatedCarrier:
    """One carrier account with the deterministic demo fleet `generate_fleet(sims, seed)`.

    The same (sims, seed) gives the same ICCIDs, statuses, rate and communication
    plans as `seed_demo --devices sims --seed seed`. Dates are relative to when
    the simulator started; usage grows with the demo billing cycle.
    """

    def __init__(self, *, sims: int = 1000, seed: int = 7, username: str = demo_fleet.DEMO_USERNAME,
                 api_key: str = demo_fleet.DEMO_API_KEY, faults: Faults | None = None, fault_seed: int | None = None,
                 clock: Callable[[], float] = time.time, log_size: int = 100_000, usage_failures: bool = False):
        if sims < 0:
            raise ValueError(f"sims must be 0 or more, got {sims}")
        self.sims, self.seed = sims, seed
        self.username = username
        self._credentials = f"{username}:{api_key}".encode()
        self.faults = faults or Faults()
        self._base_clock = clock
        self.clock_offset = 0.0  # seconds the account's clock runs ahead (POST /_sim/clock: a demo's cycle end)
        self.clock = lambda: self._base_clock() + self.clock_offset
        self._lock = threading.Lock()
        self._fault_rng = random.Random(seed if fault_seed is None else fault_seed)
        self._churn_rng = random.Random(seed + 1)
        self._fault_run = 0
        self._windows: dict[str, _Window] = {}
        self._in_flight = 0
        self.max_seen_in_flight = 0
        self.scheduled: list[dict] = []  # changes with a future effectiveDate, applied when it comes
        self.overage = {}  # index -> overageLimitOverride (DEFAULT when absent)
        self.fields: dict[int, dict[str, str]] = {}  # index -> customer, deviceID, modemID, accountCustomN
        self.changes: list[dict] = []
        # Get Usage by Rate Plan lists a plan's SIMs page by page: the list is built once per plan, cycle and
        # state of the fleet (every change of a SIM bumps the version), not once per page.
        self._version = 0
        self._on_plan: dict[tuple, list[int]] = {}
        self.requests: deque[dict] = deque(maxlen=log_size)
        self.counts: Counter[str] = Counter()

        fleet = demo_fleet.generate_fleet(sims, seed)
        # Dates are whole milliseconds (the API's precision), so modifiedSince compares exactly.
        self.started_at = int(clock() * 1000)
        self.iccids: list[str] = fleet.iccid.tolist()
        self.index = {iccid: i for i, iccid in enumerate(self.iccids)}
        self.status = [demo_fleet.STATUSES[s] for s in fleet.status.tolist()]
        self.comm_plan = [demo_fleet.COMMUNICATION_PLANS[c].name for c in fleet.comm_plan.tolist()]
        self.rate_plan = [demo_fleet.PLAN_CODES[r] for r in fleet.rate_plan.tolist()]
        self.cycle_usage_mb = fleet.cycle_usage_mb.tolist()
        # usage_failures: the fleet's SIMs without usage records answer ctdUsages with an error, as a real
        # carrier's do (the demo serves them; tests ask for such faults explicitly).
        self.usage_unavailable = set(fleet.iccid[fleet.usage_unavailable].tolist()) if usage_failures else set()
        self.customer = [fleet.customer_name(i) for i in range(sims)]
        self.date_activated = [self.started_at - s * 1000 for s in fleet.date_activated.tolist()]
        self.date_updated = [self.started_at - s * 1000 for s in fleet.date_updated.tolist()]
        self._allowed = {c.name: c.rate_plans for c in demo_fleet.COMMUNICATION_PLANS}
        # The device list is "sorted by modification date, oldest change first": kept sorted
        # incrementally, because a changed SIM always moves to the end.
        self._order = sorted(range(sims), key=lambda i: (self.date_updated[i], self.iccids[i]))
        self._order_dates = [self.date_updated[i] for i in self._order]
        self._last_touch = max(self._order_dates, default=self.started_at)
        self._tz = zoneinfo.ZoneInfo(demo_fleet.DEMO_TIMEZONE)
        # index -> [(epoch ms of a rate plan change, the plan before it)], oldest first: what plan a SIM had at the
        # end of an earlier cycle (the plan the carrier bills that cycle's usage on).
        self._plan_log: dict[int, list[tuple[int, str]]] = {}

    # -- state ------------------------------------------------------------------------------------
    def _touch(self, i: int) -> None:
        self._version += 1
        # Strictly increasing, 1 ms apart: the order of changes must stay total.
        now = max(int(self.clock() * 1000), self._last_touch + 1)
        self._last_touch = now
        pos = bisect.bisect_left(self._order_dates, self.date_updated[i])
        while self._order[pos] != i:
            pos += 1
        del self._order[pos]
        del self._order_dates[pos]
        self.date_updated[i] = now
        self._order.append(i)
        self._order_dates.append(now)

    def _change_one(self, i: int, *, reason: str) -> None:
        allowed = [p for p in self._allowed[self.comm_plan[i]] if p != self.rate_plan[i]]
        old = self.rate_plan[i]
        if allowed and (self.status[i] != "ACTIVATED" or self._churn_rng.random() < 0.8):
            self.rate_plan[i] = self._churn_rng.choice(allowed)
        else:
            self.status[i] = "DEACTIVATED"
        self._touch(i)
        self._log_plan(i, old)
        self.changes.append({"iccid": self.iccids[i], "source": reason, "from": old, "to": self.rate_plan[i],
                             "status": self.status[i], "effectiveDate": None, "at": carrier_date(self.date_updated[i])})

    def _log_plan(self, i: int, before: str) -> None:
        if self.rate_plan[i] != before:
            self._plan_log.setdefault(i, []).append((self.date_updated[i], before))

    def churn(self, n: int) -> list[str]:
        """Change n random SIMs now (a rate plan or a deactivation), as a carrier portal user would."""
        with self._lock:
            return self._churn_locked(n, reason="churn")

    def _churn_locked(self, n: int, *, reason: str) -> list[str]:
        if not self.sims:
            return []
        picked = self._churn_rng.sample(range(self.sims), min(n, self.sims))
        for i in picked:
            self._change_one(i, reason=reason)
        return [self.iccids[i] for i in picked]

    def ctd_bytes(self, iccid: str, *, at: float | None = None) -> int:
        """Cycle-to-date bytes: the SIM's cycle usage times its usage curve at the elapsed share of the demo cycle.

        Real SIMs do not use data evenly through a cycle: each SIM's curve in each cycle is
        f * (1 - t * (1 - f)) of its cycle usage at the elapsed share f, with a trend t (usage_trend) drawn per
        SIM and cycle. So usage projected from cycle to date (linearly, as the legacy did) misses the final usage
        the carrier bills, as on a real account; at the cycle's end the curve reaches the whole cycle usage.
        """
        i = self.index[iccid]
        now = self.clock() if at is None else at
        local = dt.datetime.fromtimestamp(now, self._tz)
        start, end = cycle_bounds(local.date(), demo_fleet.DEMO_CYCLE_END_DAY)
        starts = dt.datetime.combine(start, dt.time.min, tzinfo=self._tz)
        ends = dt.datetime.combine(end + dt.timedelta(days=1), dt.time.min, tzinfo=self._tz)
        fraction = min(1.0, max(1e-6, (local - starts) / (ends - starts)))
        return demo_fleet.ctd_bytes(self.cycle_usage_mb[i], trend=self.usage_trend(i, start), fraction=fraction)

    def usage_trend(self, i: int, cycle_start: dt.date) -> float:
        """SIM i's usage trend in the cycle starting `cycle_start`, in -0.95..0.95: above 0 it uses more late in the
        cycle (projections from cycle to date fall short), below 0 early (they overshoot). Deterministic: the
        communication plan's lean (USAGE_TREND_LEAN) plus a spread drawn from (seed, SIM, cycle)."""
        return demo_fleet.usage_trend(seed=self.seed, index=i, comm_plan=self.comm_plan[i], cycle_start=cycle_start)

    def plan_at(self, i: int, moment_ms: int) -> str:
        """SIM i's rate plan at `moment_ms` (epoch ms): the plan before the first change after it, else the current."""
        for changed_ms, before in self._plan_log.get(i, ()):
            if changed_ms > moment_ms:
                return before
        return self.rate_plan[i]

    def device(self, iccid: str) -> dict:
        with self._lock:
            return self._details(self.index[iccid])

    def _details(self, i: int) -> dict:
        serial = self.iccids[i][-11:]
        return {
            "iccid": self.iccids[i], "imsi": f"31017{serial}"[:15], "msisdn": f"1555{serial[-7:]}",
            "imei": f"35{serial}00"[:15], "status": self.status[i], "ratePlan": self.rate_plan[i],
            "communicationPlan": self.comm_plan[i], "customer": self.customer[i], "endConsumerId": None,
            "dateActivated": carrier_date(self.date_activated[i]), "dateAdded": carrier_date(self.date_activated[i]),
            "dateUpdated": carrier_date(self.date_updated[i]), "dateShipped": None, "accountId": "100020620",
            "fixedIPAddress": None, "operatorCustom1": "", "simNotes": None,
        }

    def set_customer(self, iccid: str, customer: str | None) -> None:
        """Move one SIM to another customer now, as a carrier portal user would (its dateUpdated moves)."""
        with self._lock:
            i = self.index[iccid]
            self.customer[i] = customer
            self._touch(i)

    def customers(self) -> dict[str, str | None]:
        """iccid -> customer name (None: no customer), for tests to compare with the database."""
        with self._lock:
            return dict(zip(self.iccids, self.customer, strict=True))

    def snapshot(self) -> dict[str, tuple[str, str, str]]:
        """iccid -> (status, ratePlan, communicationPlan), for tests to compare with the database."""
        with self._lock:
            return {c: (self.status[i], self.rate_plan[i], self.comm_plan[i]) for i, c in enumerate(self.iccids)}

    def request_log(self, path_prefix: str = "") -> list[dict]:
        with self._lock:
            return [r for r in self.requests if r["path"].startswith(path_prefix)]

    def clear_log(self) -> None:
        with self._lock:
            self.requests.clear()
            self.counts.clear()

    # -- the API ----------------------------------------------------------------------------------
    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> SimResponse:
        """Answer one request. The server calls `call_done()` once the answer is on the wire (calls in flight)."""
        path, _, query_string = target.partition("?")
        path = unquote(path)
        query = {k: v[-1] for k, v in parse_qs(query_string, keep_blank_values=True).items()}
        if path.startswith("/_sim/"):
            return self._control(method, path, query)
        with self._lock:
            self._in_flight += 1
            self.max_seen_in_flight = max(self.max_seen_in_flight, self._in_flight)
            self._apply_due_locked()
            response = self._api_locked(method, path, query, headers, body)
            throttled = b'"errorCode":"40000029"' in response.body
            self.counts[str(response.status if not response.hang else "timeout")] += 1
            if throttled:
                self.counts["throttled"] += 1
            self.requests.append({"method": method, "path": path, "query": query, "body": body[:500].decode(errors="replace"),
                                  "status": response.status, "fault": response.hang > 0, "throttled": throttled})
        if self.faults.latency_ms:
            response = SimResponse(response.status, response.body, response.headers, response.hang,
                                   delay=self.faults.latency_ms / 1000)
        return response

    def call_done(self) -> None:
        with self._lock:
            self._in_flight = max(0, self._in_flight - 1)

    def _api_locked(self, method: str, path: str, query: dict, headers: dict[str, str], body: bytes) -> SimResponse:
        fault = self._next_fault()
        if fault == "500":
            return _error(500, "internal", "Internal server error (injected by the simulator)")
        if fault == "429":
            return self._throttled("injected by the simulator")
        if fault == "timeout":
            return SimResponse(504, b'{"errorMessage":"Gateway timeout"}', hang=self.faults.hang_seconds)
        if fault == "malformed":
            self.counts["malformed"] += 1
            return SimResponse(200, b'{"pageNumber":1,"devices":[{"iccid":"8901')
        if fault and fault.startswith("code:"):
            code = fault[5:]
            if code == ERROR_CODES["throttled"]:
                return self._throttled("scripted")
            status = {"10000001": 401, "10000030": 403, "20000001": 404, "30000001": 500}.get(code, 400)
            return _json(status, {"errorMessage": f"Scripted error {code}", "errorCode": code})
        if not self._authorized(headers.get("authorization", "")):
            return _error(401, "bad_credentials", "Invalid username or API key.")
        limit = self.faults.max_in_flight
        if limit is not None and self._in_flight > limit:
            return self._throttled(f"at most {limit} call(s) in flight per account")
        if self.faults.rate_limit:
            window = self._windows.get(self.username)
            if window is None or window.rate != self.faults.rate_limit:
                window = self._windows[self.username] = _Window(self.faults.rate_limit, time.monotonic)
            if not window.take():
                return self._throttled(f"at most {self.faults.rate_limit:g} calls per second")
        if not path.startswith("/rws/api/"):
            return _error(404, None, f"No such resource: {path}")
        version, _, rest = path[len("/rws/api/"):].partition("/")
        if version != "v1":
            return _error(400, "bad_api_version", f"Invalid API version: {version!r}; the current version is 1.")
        parts = [p for p in rest.split("/") if p]
        if not parts:
            return _error(404, None, f"No such resource: {path}")
        if parts[0] == "echo" and len(parts) == 2 and method == "GET":
            return _json(200, {"context": parts[1]})
        if parts == ["rateplans"] and method == "GET":
            return self._rate_plans(query)
        if parts == ["usages"] and method == "GET":
            return self._usages(query)
        if parts[0] != "devices":
            return _error(404, None, f"No such resource: {path}")
        if len(parts) == 1:
            if method != "GET":
                return _error(405, None, f"{method} is not allowed on /devices")
            return self._list_devices(query)
        i = self.index.get(parts[1])
        if i is None:
            return _error(404, "invalid_iccid", f"Invalid ICCID: {parts[1]}")
        sub = parts[2:]
        if not sub and method == "GET":
            if parts[1] in self.faults.details_refused:
                return _error(400, "invalid_value", f"Details of {parts[1]} are not available")
            return _json(200, self._details(i))
        if not sub and method == "PUT":
            return self._edit_device(i, body)
        if sub == ["ctdUsages"] and method == "GET":
            if (parts[1] in self.faults.usage_refused or parts[1] in self.faults.usage_refused_once
                    or parts[1] in self.usage_unavailable):
                self.faults.usage_refused_once.discard(parts[1])
                return _error(400, "invalid_value", f"Usage of {parts[1]} is not available")
            details = self._details(i)
            return _json(200, {
                "iccid": details["iccid"], "imsi": details["imsi"], "msisdn": details["msisdn"],
                "imei": details["imei"], "status": details["status"], "ratePlan": details["ratePlan"],
                "communicationPlan": details["communicationPlan"], "ctdDataUsage": self.ctd_bytes(details["iccid"]),
                "ctdSMSUsage": 0, "ctdVoiceUsage": 0, "ctdSessionCount": 0, "overageLimitReached": False,
                "overageLimitOverride": self.overage.get(i, "DEFAULT"),
            })
        if sub == ["usageInZone"] and method == "GET":
            return self._usage_in_zone(i, query)
        if sub == ["sessionInfo"] and method == "GET":
            return self._session_info(i)
        return _error(405 if not sub else 404, None, f"{method} {path} is not part of the API")

    # -- cycles -----------------------------------------------------------------------------------
    def _cycle_start(self, at: float) -> dt.date:
        local = dt.datetime.fromtimestamp(at, self._tz)
        return cycle_bounds(local.date(), demo_fleet.DEMO_CYCLE_END_DAY)[0]

    def _cycle_starts(self, n: int = 3) -> list[dt.date]:
        """The current cycle's start and the n-1 before it, newest first."""
        starts = [self._cycle_start(self.clock())]
        while len(starts) < n:
            day_before = starts[-1] - dt.timedelta(days=1)
            starts.append(cycle_bounds(day_before, demo_fleet.DEMO_CYCLE_END_DAY)[0])
        return starts

    def _cycle_end_ms(self, start: dt.date) -> int:
        """The instant (epoch ms) the cycle starting `start` ends: midnight after its last day, account time."""
        end = cycle_bounds(start, demo_fleet.DEMO_CYCLE_END_DAY)[1]
        return epoch_ms_at_or_after(dt.datetime.combine(end + dt.timedelta(days=1), dt.time.min, tzinfo=self._tz))

    def _cycle_bytes(self, i: int, start: dt.date) -> int:
        """A SIM's bytes in the cycle starting `start`: cycle to date for the current one, the full cycle before."""
        if start == self._cycle_starts(1)[0]:
            return self.ctd_bytes(self.iccids[i])
        return math.floor(self.cycle_usage_mb[i] * BYTES_PER_MB)

    def _cycle_plan(self, i: int, start: dt.date) -> str:
        """The plan a cycle's usage is billed on: the current plan now, the plan at its end for an ended cycle."""
        if start == self._cycle_starts(1)[0]:
            return self.rate_plan[i]
        return self.plan_at(i, self._cycle_end_ms(start) - 1)

    def _usage_missing(self, iccid: str) -> bool:
        """The carrier's usage service has no record of this SIM (every usage call about it fails)."""
        return iccid in self.faults.usage_refused or iccid in self.usage_unavailable

    def _paging(self, query: dict) -> tuple[int, int] | SimResponse:
        try:
            size = int(query.get("pageSize", MAX_PAGE_SIZE))
            number = int(query.get("pageNumber", 1))
        except ValueError:
            return _error(400, "missing_parameter", "pageSize and pageNumber must be integers.")
        if not 1 <= size <= MAX_PAGE_SIZE:
            return _error(400, "missing_parameter", f"pageSize must be between 1 and {MAX_PAGE_SIZE}.")
        if number < 1:
            return _error(400, "missing_parameter", "pageNumber must be 1 or more.")
        return size, number

    @staticmethod
    def _unknown(query: dict, allowed: set[str]) -> SimResponse | None:
        unknown = sorted(set(query) - allowed)
        if unknown:
            return _error(400, "unknown_parameter", f"Unknown parameter(s): {', '.join(unknown)}.")
        return None

    # -- rate plans and usage by rate plan ----------------------------------------------------------
    def _rate_plans(self, query: dict) -> SimResponse:
        """Get Rate Plans (AccountAdmin role; `shared` is not for account users: an error)."""
        if "rateplans" in self.faults.no_access:
            return _error(403, "no_access", "The user's role has no access to Get Rate Plans.")
        if "shared" in query:
            return _error(400, "unknown_parameter", "shared is not applicable for account users.")
        refused = self._unknown(query, {"accountId", "pageSize", "pageNumber"})
        if refused:
            return refused
        if query.get("accountId", ACCOUNT_ID) != ACCOUNT_ID:
            return _error(400, "no_access", f"accountId {query['accountId']!r} is not your account.")
        paging = self._paging(query)
        if isinstance(paging, SimResponse):
            return paging
        size, number = paging
        plans = demo_fleet.CATALOGUE
        chosen = plans[(number - 1) * size:number * size]
        return _json(200, {
            "pageNumber": number, "lastPage": number * size >= len(plans),
            # Field names beyond name/type are unconfirmed (the page lists them per rate plan type).
            "ratePlans": [{"name": p.code, "type": "Monthly - Pooled" if p.pooled else "Monthly - Individual",
                           "shared": p.pooled, "version": 1,
                           "dataUsage": {"includedData": p.included_mb, "includedDataUnit": "MB"}} for p in chosen],
        })

    def _usages(self, query: dict) -> SimResponse:
        """Get Usage by Rate Plan: the SIMs on one (not shared) rate plan with their cycle usage, paged."""
        if "usages" in self.faults.no_access:
            return _error(403, "no_access", "The user's role has no access to Get Usage by Rate Plan.")
        refused = self._unknown(query, {"ratePlanName", "cycleStartDate", "usageType", "ratePlanVersion",
                                        "pageSize", "pageNumber"})
        if refused:
            return refused
        name = query.get("ratePlanName")
        if not name:
            return _error(400, "missing_parameter", "ratePlanName is required.")
        spec = next((p for p in demo_fleet.CATALOGUE if p.code == name), None)
        if spec is None:
            return _error(400, "invalid_value", f"Invalid rate plan: {name!r}.")
        if spec.pooled:
            return _error(400, "invalid_value", f"Rate plan {name!r} is shared: usage by rate plan is not "
                                                f"supported for shared rate plans.")
        starts = self._cycle_starts()
        start = starts[0]
        if query.get("cycleStartDate"):
            try:
                start = dt.date.fromisoformat(query["cycleStartDate"])
            except ValueError:
                return _error(400, "missing_parameter", f"cycleStartDate {query['cycleStartDate']!r} is not yyyy-MM-dd.")
            if start not in starts:
                return _error(400, "missing_parameter", f"cycleStartDate {start} is not the start of one of the "
                                                        f"last three billing cycles ({', '.join(map(str, starts))}).")
        paging = self._paging(query)
        if isinstance(paging, SimResponse):
            return paging
        size, number = paging
        # SIMs billed on the plan in that cycle (for an ended cycle: on it at the cycle's end); a SIM the usage
        # service has no record of is not listed.
        key = (name, start, self._version, self.faults.usage_refused)
        on_plan = self._on_plan.get(key)
        if on_plan is None:
            on_plan = [i for i in range(self.sims) if self._cycle_plan(i, start) == name
                       and not self._usage_missing(self.iccids[i])]
            self._on_plan = {k: v for k, v in self._on_plan.items() if k[2] == self._version}
            self._on_plan[key] = on_plan
        chosen = on_plan[(number - 1) * size:number * size]
        return _json(200, {
            # Response field names are unconfirmed: the page's answer table is not in the docs corpus.
            "ratePlanName": name, "cycleStartDate": start.isoformat(), "pageNumber": number,
            "lastPage": number * size >= len(on_plan),
            "devices": [{"iccid": self.iccids[i], "dataUsage": self._cycle_bytes(i, start), "smsUsage": 0,
                         "voiceUsage": 0} for i in chosen],
        })

    def _usage_in_zone(self, i: int, query: dict) -> SimResponse:
        """Get Device Usage by Zone: one SIM's usage in one of the last three cycles, by rate plan and zone."""
        refused = self._unknown(query, {"cycleStartDate", "ratePlan", "zone"})
        if refused:
            return refused
        starts = self._cycle_starts()
        start = starts[0]
        raw = query.get("cycleStartDate")
        if raw:
            # The request format is yyyy-MM-ddZ (a date with a zone designator).
            try:
                start = dt.date.fromisoformat(raw.rstrip("Z")[:10])
            except ValueError:
                return _error(400, "missing_parameter", f"cycleStartDate {raw!r} is not yyyy-MM-ddZ.")
            if start not in starts:
                return _error(400, "missing_parameter", f"cycleStartDate {start} is not the start of one of the "
                                                        f"last three billing cycles ({', '.join(map(str, starts))}).")
        if self._usage_missing(self.iccids[i]):
            return _error(400, "invalid_value", f"Usage of {self.iccids[i]} is not available")
        plan = self._cycle_plan(i, start)
        if query.get("ratePlan") and query["ratePlan"] != plan:
            usage = {}
        else:
            zone = query.get("zone") or "Home"
            usage = {plan: [{"zone": zone, "dataUsage": self._cycle_bytes(i, start) if zone == "Home" else 0,
                             "voiceMOUsage": 0, "voiceMTUsage": 0, "smsMOUsage": 0, "smsMTUsage": 0}]}
        return _json(200, {"iccid": self.iccids[i], "cycleStartDate": f"{start.isoformat()}Z",
                           "deviceCycleUsageInZones": usage})

    def _session_info(self, i: int) -> SimResponse:
        active = self.status[i] == "ACTIVATED"
        started = self.date_updated[i]
        return _json(200, {"iccid": self.iccids[i], "ipAddress": f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}" if active else None,
                           "ipv6Address": None, "dateSessionStarted": carrier_date(started) if active else None,
                           "dateSessionEnded": None if active else carrier_date(started)})

    def _throttled(self, why: str) -> SimResponse:
        status = self.faults.throttle_status
        return _json(status, {"errorMessage": f"Rate Limit Exceeded ({why})", "errorCode": "40000029"},
                     (("Retry-After", "1"),) if status == 429 else ())

    def _next_fault(self) -> str | None:
        faults = self.faults
        if faults.script:
            fate = faults.script.popleft()
            return None if fate == "ok" else fate
        if faults.outage:
            return "500"
        unlucky = bool(faults.error_rate) and self._fault_rng.random() < faults.error_rate
        if unlucky and (not faults.fault_burst or self._fault_run < faults.fault_burst):
            self._fault_run += 1
            return self._fault_rng.choice(faults.fault_kinds)
        self._fault_run = 0
        return None

    def _authorized(self, header: str) -> bool:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            given = base64.b64decode(token.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        return hmac.compare_digest(given, self._credentials)

    def _list_devices(self, query: dict) -> SimResponse:
        """Search Devices: SIMs changed since modifiedSince, oldest change first, optionally one status."""
        refused = self._unknown(query, {"modifiedSince", "status", "accountId", "pageSize", "pageNumber"})
        if refused:
            return refused
        raw_since = query.get("modifiedSince")
        if not raw_since:
            return _error(400, "missing_parameter", "modifiedSince is required.")
        try:
            since = dt.datetime.fromisoformat(raw_since)
        except ValueError:
            return _error(400, "missing_parameter", f"modifiedSince {raw_since!r} is not an ISO 8601 date.")
        if since.tzinfo is None:
            since = since.replace(tzinfo=dt.UTC)
        max_days = self.faults.modified_since_max_days
        if max_days is not None and since < dt.datetime.fromtimestamp(self.clock(), dt.UTC) - dt.timedelta(days=max_days):
            return _error(400, "missing_parameter", f"modifiedSince may be at most {max_days} days ago.")
        status = query.get("status")
        if status is not None and status not in SIM_STATUSES:
            return _error(400, "invalid_value", f"Invalid status: {status!r}.")
        if query.get("accountId", ACCOUNT_ID) != ACCOUNT_ID:
            return _error(400, "no_access", f"accountId {query['accountId']!r} is not an account this user may see.")
        paging = self._paging(query)
        if isinstance(paging, SimResponse):
            return paging
        size, number = paging
        if self.faults.malformed_page == number:
            return SimResponse(200, f'{{"pageNumber":{number},"devices":[{{"iccid":"8901'.encode())
        start = bisect.bisect_left(self._order_dates, epoch_ms_at_or_after(since))
        stride = size - 1 if self.faults.duplicate_across_pages and size > 1 else size
        first = (number - 1) * stride
        if status is None:  # no copy of the (million-long) order per page
            chosen = self._order[start + first:start + first + size]
            remaining = len(self._order) - start
        else:
            order = [i for i in self._order[start:] if self.status[i] == status]
            chosen, remaining = order[first:first + size], len(order)
        last_page = first + size >= remaining and not self.faults.never_last_page
        payload = {
            "pageNumber": number,
            "devices": [{"iccid": self.iccids[i], "status": self.status[i], "ratePlan": self.rate_plan[i],
                         "communicationPlan": self.comm_plan[i]} for i in chosen],
            "lastPage": last_page,
        }
        if self.faults.churn:
            self._churn_locked(self.faults.churn, reason="churn between pages")
        return _json(200, payload)

    def _edit_device(self, i: int, body: bytes) -> SimResponse:
        """Edit Device Details: at least one editable field; effectiveDate (yyyy-MM-dd) schedules it, at most
        180 days ahead; without one (or with today or a past day) the change happens at once."""
        try:
            payload = json.loads(body or b"null")
        except ValueError:
            return _error(400, "bad_json", "The request body is not valid JSON.")
        if not isinstance(payload, dict):
            return _error(400, "bad_json", "The request body must be a JSON object.")
        unknown = set(payload) - set(EDITABLE) - {"effectiveDate"}
        if unknown:
            return _error(400, "unknown_parameter", f"Unknown parameter(s): {', '.join(sorted(unknown))}.")
        edits = {k: v for k, v in payload.items() if k != "effectiveDate"}
        if not edits:
            return _error(400, "missing_parameter", "At least one of " + ", ".join(EDITABLE[:7]) +
                          " or a custom field is required.")
        for key, value in edits.items():
            if not isinstance(value, str):
                return _error(400, "invalid_value", f"{key} must be a string, got {value!r}.")
        if "status" in edits and edits["status"] not in SIM_STATUSES:
            return _error(400, "invalid_value", f"Invalid status: {edits['status']!r}.")
        comm = edits.get("communicationPlan", self.comm_plan[i])
        if comm not in self._allowed:
            return _error(400, "invalid_value", f"Invalid communication plan: {comm!r}.")
        plan = edits.get("ratePlan", self.rate_plan[i])
        if "ratePlan" in edits and plan not in demo_fleet.PLAN_CODES:
            return _error(400, "invalid_value", f"Invalid rate plan: {plan!r}.")
        if plan not in self._allowed[comm]:
            return _error(400, "not_allowed", f"Rate plan {plan!r} is not available for communication plan {comm!r}.")
        if "overageLimitOverride" in edits and edits["overageLimitOverride"] not in OVERAGE_OVERRIDES:
            return _error(400, "invalid_value", f"Invalid overageLimitOverride: {edits['overageLimitOverride']!r}.")
        effective = payload.get("effectiveDate")
        when: dt.date | None = None
        if effective is not None:
            try:
                when = dt.date.fromisoformat(str(effective)[:10])
            except ValueError:
                return _error(400, "invalid_value", f"effectiveDate {effective!r} is not a date (yyyy-MM-dd).")
            today = dt.datetime.fromtimestamp(self.clock(), self._tz).date()
            if when > today + dt.timedelta(days=MAX_EFFECTIVE_DAYS):
                return _error(400, "invalid_value", f"effectiveDate {when} is more than {MAX_EFFECTIVE_DAYS} days "
                                                    f"in the future.")
            if when <= today:
                when = None
        if when is not None:
            self.scheduled.append({"index": i, "edits": edits, "effectiveDate": when.isoformat()})
            return _json(200, {"iccid": self.iccids[i]})
        self._apply_edits(i, edits, source="api", effective=effective)
        return _json(200, {"iccid": self.iccids[i]})

    def _apply_edits(self, i: int, edits: dict, *, source: str, effective) -> None:
        old = self.rate_plan[i]
        self.rate_plan[i] = edits.get("ratePlan", old)
        self.comm_plan[i] = edits.get("communicationPlan", self.comm_plan[i])
        self.status[i] = edits.get("status", self.status[i])
        if "overageLimitOverride" in edits:
            self.overage[i] = edits["overageLimitOverride"]
        if "customer" in edits:
            self.customer[i] = edits["customer"] or None
        other = {k: v for k, v in edits.items() if k not in ("ratePlan", "communicationPlan", "status", "overageLimitOverride")}
        if other:
            self.fields.setdefault(i, {}).update(other)
        self._touch(i)
        self._log_plan(i, old)
        self.changes.append({"iccid": self.iccids[i], "source": source, "from": old, "to": self.rate_plan[i],
                             "status": self.status[i], "effectiveDate": effective, "edits": dict(edits),
                             "at": carrier_date(self.date_updated[i])})

    def _apply_due_locked(self) -> None:
        """Scheduled changes whose effectiveDate has come (in the account's time zone) take effect."""
        if not self.scheduled:
            return
        today = dt.datetime.fromtimestamp(self.clock(), self._tz).date().isoformat()
        due = [c for c in self.scheduled if c["effectiveDate"] <= today]
        if due:
            self.scheduled = [c for c in self.scheduled if c["effectiveDate"] > today]
            for change in due:
                self._apply_edits(change["index"], change["edits"], source="api (scheduled)",
                                  effective=change["effectiveDate"])

    # -- test controls, loopback only ------------------------------------------------------------------
    def _control(self, method: str, path: str, query: dict) -> SimResponse:
        if path == "/_sim/changes" and method == "GET":
            with self._lock:
                return _json(200, {"changes": list(self.changes)})
        if path == "/_sim/stats" and method == "GET":
            with self._lock:
                return _json(200, {"sims": self.sims, "seed": self.seed, "requests": sum(self.counts.values()),
                                   "by_status": dict(self.counts), "changes": len(self.changes)})
        if path == "/_sim/clock" and method == "POST":
            # Move the account's clock (never back): ?at=<ISO 8601 moment>. A demo uses it to end a billing cycle.
            try:
                at = dt.datetime.fromisoformat(query.get("at", ""))
            except ValueError:
                return _error(400, None, "at must be an ISO 8601 moment with its zone.")
            if at.tzinfo is None:
                return _error(400, None, "at must carry its zone.")
            with self._lock:
                self.clock_offset = max(self.clock_offset, at.timestamp() - self._base_clock())
                return _json(200, {"now": dt.datetime.fromtimestamp(self.clock(), dt.UTC).isoformat()})
        if path == "/_sim/churn" and method == "POST":
            try:
                n = int(query.get("n", "1"))
            except ValueError:
                return _error(400, None, "n must be an integer.")
            return _json(200, {"changed": self.churn(n)})
        return _error(404, None, f"No such control: {method} {path}")
