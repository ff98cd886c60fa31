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

# Error codes are the simulator's own; only the body shape {"errorMessage", "errorCode"} is the carrier's.
ERROR_CODES = {
    400: "10000024",
    401: "10000001",
    404: "10000003",
    405: "10000005",
    429: "40000029",
    500: "50000000",
    504: "50400000",
}
FAULT_KINDS = ("500", "429", "timeout")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass
class Faults:
    """What the simulator does wrong on purpose. Mutable while it runs (tests flip it between calls)."""

    error_rate: float = 0.0  # share of API calls answered 500, 429 or left hanging
    fault_kinds: tuple[str, ...] = FAULT_KINDS
    # Injected faults are transient blips: at most this many in a row (0 = no cap), so a
    # 10 % error rate does not trip the client's 5-failure breaker by chance. Outages are `outage`.
    fault_burst: int = 2
    hang_seconds: float = 5.0  # how long a "timeout" fault keeps the caller waiting
    latency_ms: float = 0.0  # added to every API call
    malformed_page: int | None = None  # this device-list page is answered with truncated JSON
    duplicate_across_pages: bool = False  # the last SIM of each page is repeated first on the next
    churn: int = 0  # SIMs changed after each device-list page is served
    rate_limit: float | None = None  # calls per second per username, 429 beyond
    never_last_page: bool = False  # lastPage is always false (a carrier that never ends)
    outage: bool = False  # every API call answers 500
    script: deque[str] = field(default_factory=deque)  # the next calls' fate, in order: 500/429/timeout/ok
    # ctdUsages of these ICCIDs is refused (HTTP 400) every time, or only the first time it is asked:
    # a carrier whose usage service has no record of some SIMs, or stumbles on a few.
    usage_refused: frozenset[str] = frozenset()
    usage_refused_once: set[str] = field(default_factory=set)

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


def _error(status: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> SimResponse:
    return _json(status, {"errorMessage": message, "errorCode": ERROR_CODES[status]}, headers)


def carrier_date(epoch_ms: int) -> str:
    """Control Center's date format: 2016-06-08 20:34:37.573+0000."""
    moment = _EPOCH + dt.timedelta(milliseconds=epoch_ms)
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{epoch_ms % 1000:03d}+0000"


def epoch_ms_at_or_after(moment: dt.datetime) -> int:
    """The first whole millisecond at or after `moment`, exactly (no float rounding)."""
    micros = (moment - _EPOCH) // dt.timedelta(microseconds=1)
    return -(-micros // 1000)


class _UserBucket:
    """Server-side rate limit: a bucket of `rate` tokens refilled at `rate` per second."""

    def __init__(self, rate: float, clock: Callable[[], float]):
        self.rate, self.clock = rate, clock
        self.tokens, self.stamp = max(1.0, rate), clock()

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(max(1.0, self.rate), self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


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
        self.clock = clock
        self._lock = threading.Lock()
        self._fault_rng = random.Random(seed if fault_seed is None else fault_seed)
        self._churn_rng = random.Random(seed + 1)
        self._fault_run = 0
        self._buckets: dict[str, _UserBucket] = {}
        self.changes: list[dict] = []
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
        self.date_activated = [self.started_at - s * 1000 for s in fleet.date_activated.tolist()]
        self.date_updated = [self.started_at - s * 1000 for s in fleet.date_updated.tolist()]
        self._allowed = {c.name: c.rate_plans for c in demo_fleet.COMMUNICATION_PLANS}
        # The device list is "sorted by modification date, oldest change first": kept sorted
        # incrementally, because a changed SIM always moves to the end.
        self._order = sorted(range(sims), key=lambda i: (self.date_updated[i], self.iccids[i]))
        self._order_dates = [self.date_updated[i] for i in self._order]
        self._last_touch = max(self._order_dates, default=self.started_at)
        self._tz = zoneinfo.ZoneInfo(demo_fleet.DEMO_TIMEZONE)

    # -- state ------------------------------------------------------------------------------------
    def _touch(self, i: int) -> None:
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
        self.changes.append({"iccid": self.iccids[i], "source": reason, "from": old, "to": self.rate_plan[i],
                             "status": self.status[i], "effectiveDate": None, "at": carrier_date(self.date_updated[i])})

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
        """Cycle-to-date bytes: the SIM's cycle usage times the elapsed share of the demo cycle (as seed_demo)."""
        i = self.index[iccid]
        now = self.clock() if at is None else at
        local = dt.datetime.fromtimestamp(now, self._tz)
        start, end = cycle_bounds(local.date(), demo_fleet.DEMO_CYCLE_END_DAY)
        starts = dt.datetime.combine(start, dt.time.min, tzinfo=self._tz)
        ends = dt.datetime.combine(end + dt.timedelta(days=1), dt.time.min, tzinfo=self._tz)
        fraction = min(1.0, max(1e-6, (local - starts) / (ends - starts)))
        return math.floor(self.cycle_usage_mb[i] * fraction * BYTES_PER_MB)

    def device(self, iccid: str) -> dict:
        with self._lock:
            return self._details(self.index[iccid])

    def _details(self, i: int) -> dict:
        serial = self.iccids[i][-11:]
        return {
            "iccid": self.iccids[i], "imsi": f"31017{serial}"[:15], "msisdn": f"1555{serial[-7:]}",
            "imei": f"35{serial}00"[:15], "status": self.status[i], "ratePlan": self.rate_plan[i],
            "communicationPlan": self.comm_plan[i], "customer": None, "endConsumerId": None,
            "dateActivated": carrier_date(self.date_activated[i]), "dateAdded": carrier_date(self.date_activated[i]),
            "dateUpdated": carrier_date(self.date_updated[i]), "dateShipped": None, "accountId": "100020620",
            "fixedIPAddress": None, "operatorCustom1": "", "simNotes": None,
        }

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
        path, _, query_string = target.partition("?")
        path = unquote(path)
        query = {k: v[-1] for k, v in parse_qs(query_string, keep_blank_values=True).items()}
        if path.startswith("/_sim/"):
            return self._control(method, path, query)
        with self._lock:
            response = self._api_locked(method, path, query, headers, body)
            self.counts[str(response.status if not response.hang else "timeout")] += 1
            self.requests.append({"method": method, "path": path, "query": query,
                                  "status": response.status, "fault": response.hang > 0})
        if self.faults.latency_ms:
            response = SimResponse(response.status, response.body, response.headers, response.hang,
                                   delay=self.faults.latency_ms / 1000)
        return response

    def _api_locked(self, method: str, path: str, query: dict, headers: dict[str, str], body: bytes) -> SimResponse:
        fault = self._next_fault()
        if fault == "500":
            return _error(500, "Internal server error (injected by the simulator)")
        if fault == "429":
            return _error(429, "Too many requests (injected by the simulator)", (("Retry-After", "1"),))
        if fault == "timeout":
            return SimResponse(504, b'{"errorMessage":"Gateway timeout","errorCode":"50400000"}',
                               hang=self.faults.hang_seconds)
        if not self._authorized(headers.get("authorization", "")):
            return _error(401, "Invalid username or API key.")
        if self.faults.rate_limit:
            bucket = self._buckets.get(self.username)
            if bucket is None or bucket.rate != self.faults.rate_limit:
                bucket = self._buckets[self.username] = _UserBucket(self.faults.rate_limit, time.monotonic)
            if not bucket.take():
                return _error(429, f"Rate limit exceeded: at most {self.faults.rate_limit:g} calls per second.",
                              (("Retry-After", "1"),))
        if not path.startswith(API_PREFIX + "/devices"):
            return _error(404, f"No such resource: {path}")
        rest = path[len(API_PREFIX + "/devices"):].strip("/")
        parts = rest.split("/") if rest else []
        if not parts:
            if method != "GET":
                return _error(405, f"{method} is not allowed on /devices")
            return self._list_devices(query)
        i = self.index.get(parts[0])
        if i is None:
            return _error(404, f"Invalid ICCID: {parts[0]}")
        if len(parts) == 1 and method == "GET":
            return _json(200, self._details(i))
        if len(parts) == 1 and method == "PUT":
            return self._edit_device(i, body)
        if parts[1:] == ["ctdUsages"] and method == "GET":
            if (parts[0] in self.faults.usage_refused or parts[0] in self.faults.usage_refused_once
                    or parts[0] in self.usage_unavailable):
                self.faults.usage_refused_once.discard(parts[0])
                return _error(400, f"Usage of {parts[0]} is not available")
            details = self._details(i)
            return _json(200, {
                "iccid": details["iccid"], "imsi": details["imsi"], "msisdn": details["msisdn"],
                "imei": details["imei"], "status": details["status"], "ratePlan": details["ratePlan"],
                "communicationPlan": details["communicationPlan"], "ctdDataUsage": self.ctd_bytes(details["iccid"]),
                "ctdSMSUsage": 0, "ctdVoiceUsage": 0, "ctdSessionCount": 0, "overageLimitReached": False,
                "overageLimitOverride": "DEFAULT",
            })
        return _error(405 if len(parts) == 1 else 404, f"{method} {path} is not part of the API")

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
        raw_since = query.get("modifiedSince")
        if not raw_since:
            return _error(400, "modifiedSince is required.")
        try:
            since = dt.datetime.fromisoformat(raw_since)
        except ValueError:
            return _error(400, f"modifiedSince {raw_since!r} is not an ISO 8601 date.")
        if since.tzinfo is None:
            since = since.replace(tzinfo=dt.UTC)
        try:
            size = int(query.get("pageSize", MAX_PAGE_SIZE))
            number = int(query.get("pageNumber", 1))
        except ValueError:
            return _error(400, "pageSize and pageNumber must be integers.")
        if not 1 <= size <= MAX_PAGE_SIZE:
            return _error(400, f"pageSize must be between 1 and {MAX_PAGE_SIZE}.")
        if number < 1:
            return _error(400, "pageNumber must be 1 or more.")
        if self.faults.malformed_page == number:
            return SimResponse(200, f'{{"pageNumber":{number},"devices":[{{"iccid":"8901'.encode())
        start = bisect.bisect_left(self._order_dates, epoch_ms_at_or_after(since))
        stride = size - 1 if self.faults.duplicate_across_pages and size > 1 else size
        first = start + (number - 1) * stride
        chosen = self._order[first:first + size]
        last_page = first + size >= len(self._order) and not self.faults.never_last_page
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
        try:
            payload = json.loads(body or b"null")
        except ValueError:
            return _error(400, "The request body is not JSON.")
        if not isinstance(payload, dict) or "ratePlan" not in payload:
            return _error(400, "The request body must be a JSON object with ratePlan.")
        unsupported = set(payload) - {"ratePlan", "effectiveDate"}
        if unsupported:
            return _error(400, f"The simulator cannot edit {', '.join(sorted(unsupported))}.")
        plan = payload["ratePlan"]
        if plan not in demo_fleet.PLAN_CODES:
            return _error(400, f"Invalid rate plan: {plan!r}.")
        if plan not in self._allowed[self.comm_plan[i]]:
            return _error(400, f"Rate plan {plan!r} is not available for communication plan {self.comm_plan[i]!r}.")
        effective = payload.get("effectiveDate")
        if effective is not None:
            try:
                dt.date.fromisoformat(str(effective)[:10])
            except ValueError:
                return _error(400, f"effectiveDate {effective!r} is not a date (yyyy-MM-dd).")
        old = self.rate_plan[i]
        self.rate_plan[i] = plan
        self._touch(i)
        self.changes.append({"iccid": self.iccids[i], "source": "api", "from": old, "to": plan,
                             "status": self.status[i], "effectiveDate": effective,
                             "at": carrier_date(self.date_updated[i])})
        return _json(200, {"iccid": self.iccids[i]})

    # -- test controls, loopback only ------------------------------------------------------------------
    def _control(self, method: str, path: str, query: dict) -> SimResponse:
        if path == "/_sim/changes" and method == "GET":
            with self._lock:
                return _json(200, {"changes": list(self.changes)})
        if path == "/_sim/stats" and method == "GET":
            with self._lock:
                return _json(200, {"sims": self.sims, "seed": self.seed, "requests": sum(self.counts.values()),
                                   "by_status": dict(self.counts), "changes": len(self.changes)})
        if path == "/_sim/churn" and method == "POST":
            try:
                n = int(query.get("n", "1"))
            except ValueError:
                return _error(400, "n must be an integer.")
            return _json(200, {"changed": self.churn(n)})
        return _error(404, f"No such control: {method} {path}")
