"""The Jasper-family client (Cisco Control Center REST API v1): Jasper, POD19, T-Mobile Jasper, Rogers."""
from __future__ import annotations

import datetime as dt
import logging
import random
import time
from typing import Any
from urllib.parse import quote

import httpx

from carriers.base import (
    MAX_PAGE_SIZE,
    CarrierClient,
    CtdUsage,
    CycleUsage,
    DeviceDetails,
    DevicePage,
    DeviceRecord,
    UsagePage,
)
from carriers.errors import (
    THROTTLED_CODE,
    CarrierAccountError,
    CarrierAuthError,
    CarrierBadValue,
    CarrierConfigError,
    CarrierNotFound,
    CarrierProtocolError,
    CarrierRequestRejected,
    CarrierThrottled,
    CarrierUnavailable,
    error_meaning,
    error_scope,
)
from carriers.limits import CircuitBreaker, RetryPolicy, account_limiter

log = logging.getLogger(__name__)

API_PREFIX = "/rws/api/v1"


def parse_carrier_datetime(value: Any, *, field: str) -> dt.datetime | None:
    """Control Center dates: '2016-06-08 20:34:37.573+0000' or ISO 8601; naive ones are UTC."""
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise ValueError(f"{field} {value!r} is not a date")
    try:
        parsed = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"{field} {value!r} is not a date") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def format_modified_since(value: dt.datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("modified_since must be timezone-aware")
    return value.astimezone(dt.UTC).isoformat(timespec="seconds")


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


class JasperClient(CarrierClient):
    """Basic auth with username:apiKey; every call goes through the account's token bucket,
    retries timeouts / 429 / 5xx with backoff, and feeds one circuit breaker."""

    integration = "Jasper"

    def __init__(self, *, base_url: str, username: str, api_key: str, label: str, rate_limit: float,
                 max_concurrency: int, max_pages: int, timeout: float = 30.0, connect_timeout: float = 10.0,
                 retry: RetryPolicy | None = None, breaker: CircuitBreaker | None = None,
                 limiter_key: object = None, rng: random.Random | None = None,
                 transport: httpx.BaseTransport | None = None):
        super().__init__(label=label, max_concurrency=max_concurrency, max_pages=max_pages)
        root = base_url.rstrip("/")
        if not root.endswith(API_PREFIX):
            root += API_PREFIX
        self.api_root = root
        self.username = username
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.breaker = breaker or CircuitBreaker()
        self.limiter = account_limiter(limiter_key or (root, username), rate=rate_limit,
                                       max_concurrency=self.max_concurrency)
        self._rng = rng or random.Random()
        # httpx.BasicAuth keeps only the encoded header; the key itself is not stored on the client.
        self._http = httpx.Client(
            base_url=root, auth=httpx.BasicAuth(username, api_key),
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            limits=httpx.Limits(max_connections=self.max_concurrency, max_keepalive_connections=self.max_concurrency),
            headers={"Accept": "application/json", "User-Agent": "carrieropt-sync/1"},
            transport=transport, follow_redirects=False,
        )

    # -- the four calls -------------------------------------------------------------------------
    def list_devices_page(self, *, modified_since: dt.datetime, page_number: int,
                          page_size: int = MAX_PAGE_SIZE) -> DevicePage:
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be 1..{MAX_PAGE_SIZE}, got {page_size}")
        what = f"page {page_number} of the device list"
        body = self._call("GET", "/devices", what=what, params={
            "modifiedSince": format_modified_since(modified_since), "pageSize": page_size, "pageNumber": page_number})
        if not isinstance(body, dict):
            raise CarrierProtocolError(f"{self.label}: {what} is not a JSON object")
        devices, last_page = body.get("devices"), body.get("lastPage")
        if not isinstance(devices, list):
            raise CarrierProtocolError(f"{self.label}: {what} has no 'devices' list")
        if not isinstance(last_page, bool):
            raise CarrierProtocolError(f"{self.label}: {what} has no true/false 'lastPage'")
        echoed = body.get("pageNumber")
        if echoed is not None and echoed != page_number:
            raise CarrierProtocolError(f"{self.label}: asked for page {page_number}, the carrier answered page {echoed!r}")
        return DevicePage(page_number=page_number, last_page=last_page,
                          devices=[self._record(entry, page_number, i) for i, entry in enumerate(devices)])

    def get_device(self, iccid: str) -> DeviceDetails:
        body = self._call("GET", f"/devices/{quote(iccid, safe='')}", what=f"details of ICCID {iccid}", iccid=iccid)
        record = self._record(body, None, None)
        if record.problem:
            raise CarrierProtocolError(f"{self.label}: details of ICCID {iccid}: {record.problem}")
        return DeviceDetails(iccid=record.iccid or iccid, status=record.status, rate_plan=record.rate_plan,
                             communication_plan=record.communication_plan, msisdn=record.msisdn,
                             date_activated=record.date_activated, date_added=record.date_added,
                             date_updated=record.date_updated, customer=(record.customer or "").strip())

    def get_ctd_usage(self, iccid: str) -> CtdUsage:
        what = f"cycle-to-date usage of ICCID {iccid}"
        body = self._call("GET", f"/devices/{quote(iccid, safe='')}/ctdUsages", what=what, iccid=iccid)
        measured_at = dt.datetime.now(dt.UTC)
        if not isinstance(body, dict):
            raise CarrierProtocolError(f"{self.label}: {what} is not a JSON object", field="ctdDataUsage")
        raw = body.get("ctdDataUsage")
        # JSON numbers only: a float or string byte count means the answer is not what the API defines.
        if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
            raise CarrierBadValue(f"{self.label}: {what}: ctdDataUsage {raw!r} is not a byte count",
                                  field="ctdDataUsage")
        return CtdUsage(iccid=iccid, ctd_bytes=raw, status=_text(body.get("status")),
                        rate_plan=_text(body.get("ratePlan")), measured_at=measured_at)

    # -- usage of a given cycle (final usage of an ended one) ------------------------------------------
    def rate_plan_usage_page(self, *, rate_plan: str, cycle_start: dt.date, page_number: int,
                             page_size: int = MAX_PAGE_SIZE) -> UsagePage:
        """Get Usage by Rate Plan: GET /usages?ratePlanName=…&cycleStartDate=yyyy-MM-dd, paged. Shared rate plans
        are not supported by the carrier; a plan it refuses (a SIM-scope code) raises CarrierRequestRejected, so
        the caller can ask that plan's SIMs one by one."""
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be 1..{MAX_PAGE_SIZE}, got {page_size}")
        what = f"page {page_number} of the usage of rate plan {rate_plan!r} in the cycle starting {cycle_start}"
        try:
            body = self._call("GET", "/usages", what=what, field="ratePlanName", params={
                "ratePlanName": rate_plan, "cycleStartDate": cycle_start.isoformat(), "pageSize": page_size,
                "pageNumber": page_number})
        except CarrierAccountError as exc:
            if error_scope(exc.carrier_code) != "sim":
                raise
            raise CarrierRequestRejected(f"{self.label}: {what}: the carrier refused the rate plan (errorCode "
                                         f"{exc.carrier_code}: {error_meaning(exc.carrier_code)})",
                                         field="ratePlanName") from None
        if not isinstance(body, dict):
            raise CarrierProtocolError(f"{self.label}: {what} is not a JSON object")
        devices, last_page = body.get("devices"), body.get("lastPage")
        if not isinstance(devices, list):
            raise CarrierProtocolError(f"{self.label}: {what} has no 'devices' list")
        if not isinstance(last_page, bool):
            raise CarrierProtocolError(f"{self.label}: {what} has no true/false 'lastPage'")
        echoed = body.get("pageNumber")
        if echoed is not None and echoed != page_number:
            raise CarrierProtocolError(f"{self.label}: asked for page {page_number}, the carrier answered page {echoed!r}")
        self._check_cycle(body.get("cycleStartDate"), cycle_start, what=what)
        usages, problems = [], []
        for index, entry in enumerate(devices):
            iccid = _text(entry.get("iccid")) if isinstance(entry, dict) else None
            raw = entry.get("dataUsage") if isinstance(entry, dict) else None
            if not iccid:
                problems.append(f"entry {index} of {what} has no iccid")
            elif isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
                problems.append(f"{iccid}: dataUsage {raw!r} in {what} is not a byte count")
            else:
                usages.append(CycleUsage(iccid=iccid, data_bytes=raw, rate_plan=rate_plan, cycle_start=cycle_start))
        return UsagePage(rate_plan=rate_plan, cycle_start=cycle_start, page_number=page_number, last_page=last_page,
                         usages=usages, problems=problems)

    def get_cycle_usage(self, iccid: str, *, cycle_start: dt.date) -> CycleUsage:
        """Get Device Usage by Zone: GET /devices/{iccid}/usageInZone?cycleStartDate=yyyy-MM-ddZ (one of the last
        three cycles). The SIM's data usage is the sum over every rate plan and zone of the answer; its rate plan
        is the one the answer names (with several, the one carrying the most data)."""
        what = f"usage of ICCID {iccid} in the cycle starting {cycle_start}"
        body = self._call("GET", f"/devices/{quote(iccid, safe='')}/usageInZone", what=what, iccid=iccid,
                          params={"cycleStartDate": f"{cycle_start.isoformat()}Z"}, field="cycleStartDate")
        if not isinstance(body, dict):
            raise CarrierProtocolError(f"{self.label}: {what} is not a JSON object")
        if body.get("iccid") not in (None, iccid):
            raise CarrierProtocolError(f"{self.label}: {what} was answered for ICCID {body.get('iccid')!r}")
        self._check_cycle(body.get("cycleStartDate"), cycle_start, what=what)
        zones = body.get("deviceCycleUsageInZones")
        if zones is None:
            zones = {}
        if not isinstance(zones, dict):
            raise CarrierBadValue(f"{self.label}: {what}: deviceCycleUsageInZones is not an object",
                                  field="deviceCycleUsageInZones")
        by_plan: dict[str, int] = {}
        for plan, entries in zones.items():
            if not isinstance(entries, list):
                raise CarrierBadValue(f"{self.label}: {what}: the usage of rate plan {plan!r} is not a list",
                                      field="deviceCycleUsageInZones")
            for entry in entries:
                raw = entry.get("dataUsage") if isinstance(entry, dict) else None
                if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
                    raise CarrierBadValue(f"{self.label}: {what}: dataUsage {raw!r} is not a byte count",
                                          field="dataUsage")
                by_plan[plan] = by_plan.get(plan, 0) + raw
        plan = max(sorted(by_plan), key=lambda p: by_plan[p]) if by_plan else None
        return CycleUsage(iccid=iccid, data_bytes=sum(by_plan.values()), rate_plan=plan, cycle_start=cycle_start)

    def _check_cycle(self, answered: Any, asked: dt.date, *, what: str) -> None:
        """The carrier must answer the cycle asked for: usage of another cycle stored as this one's would be wrong."""
        if answered is None:
            return
        try:
            day = dt.date.fromisoformat(str(answered).strip().rstrip("Z")[:10])
        except ValueError:
            raise CarrierProtocolError(f"{self.label}: {what}: cycleStartDate {answered!r} is not a date") from None
        if day != asked:
            raise CarrierProtocolError(f"{self.label}: {what}: the carrier answered the cycle starting {day}")

    def change_rate_plan(self, iccid: str, rate_plan: str, effective_date: dt.date | None = None) -> str:
        """PUT /devices/{iccid} {"ratePlan": ...}. Setting the same plan twice is harmless, so it is retried like a read."""
        if not rate_plan:
            raise CarrierRequestRejected("rate_plan must not be empty", field="rate_plan")
        payload: dict[str, str] = {"ratePlan": rate_plan}
        if effective_date is not None:
            payload["effectiveDate"] = effective_date.isoformat()
        body = self._call("PUT", f"/devices/{quote(iccid, safe='')}", json=payload, iccid=iccid,
                          what=f"change of ICCID {iccid} to rate plan {rate_plan!r}", field="rate_plan")
        confirmed = body.get("iccid") if isinstance(body, dict) else None
        if confirmed != iccid:
            raise CarrierProtocolError(
                f"{self.label}: change of ICCID {iccid} to rate plan {rate_plan!r} was answered for ICCID {confirmed!r}")
        return confirmed

    # -- one call with retries -------------------------------------------------------------------
    def _call(self, method: str, path: str, *, what: str, params: dict | None = None, json: dict | None = None,
              iccid: str | None = None, field: str | None = None) -> Any:
        """One API call: throttling waits and is retried (its own budget), timeouts / 5xx / broken JSON are
        retried up to max_attempts, and only a call that fails for good counts against the breaker."""
        attempts = self.retry.max_attempts
        endpoint = call_endpoint(method, path)
        failed = throttled = 0
        while True:
            self.breaker.before_call(label=self.label)
            response: httpx.Response | None = None
            with self.limiter.slot():
                self.stats.call_started()
                try:
                    response = self._http.request(method, path, params=params, json=json)
                except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
                    # A configuration mistake, not a blip: retrying cannot help.
                    raise CarrierConfigError(f"{self.label}: api_base_url {self.api_root!r} is not a usable "
                                             f"http(s) URL ({exc})", field="api_base_url") from None
                except httpx.TimeoutException:
                    failure = f"{what}: no answer within {self.timeout:g}s"
                    self.stats.add(timeouts=1)
                    self.stats.count_call(endpoint, "timeout")
                except httpx.TransportError as exc:
                    # The exception text names host and port only; it never carries headers.
                    failure = f"{what}: connection failed ({type(exc).__name__}: {exc})"
                    self.stats.count_call(endpoint, "connection_error")
                finally:
                    self.stats.call_ended()
            broken = False
            if response is not None:
                body, parsed = _json_or_none(response)
                code = _error_code(body)
                is_throttled = code == THROTTLED_CODE or response.status_code == 429
                self.stats.count_call(endpoint, "throttled" if is_throttled else call_outcome(response.status_code))
                if is_throttled:
                    # Throttling, whatever the HTTP status (Control Center answers 400 + 40000029): the
                    # account's budget, not this call or this SIM. Slow the account down and wait.
                    throttled += 1
                    retry_after = _retry_after_seconds(response)
                    self.stats.add(throttled=1)
                    rate = self.limiter.throttled(retry_after)
                    log.info("%s: %s throttled (HTTP %s, errorCode %s); rate now %.2f/s", self.label, what,
                             response.status_code, code, rate)
                    if throttled > self.retry.max_throttled:
                        raise CarrierThrottled(
                            f"{self.label}: {what}: still throttled after {throttled} backoffs (HTTP "
                            f"{response.status_code}, errorCode {code or '-'} Rate Limit Exceeded); the account's "
                            f"call budget is spent, perhaps by another client of the same account.", field=field)
                    self.stats.add(retries=1)
                    time.sleep(self.retry.delay(min(throttled - 1, 10), retry_after=retry_after, rng=self._rng))
                    continue
                if response.status_code >= 500 and error_scope(code) in (None, "server"):
                    failure = f"{what}: HTTP {response.status_code}{_carrier_says(body)}"
                elif 200 <= response.status_code < 300 and not parsed:
                    broken = True
                    snippet = response.text[:80].replace("\n", " ")
                    failure = f"{what} is not valid JSON (starts {snippet!r})"
                else:
                    self.limiter.succeeded()
                    self.breaker.record_success()
                    return self._answer(response, body, code, what=what, iccid=iccid, field=field)
            failed += 1
            self.stats.add(failures=1)
            log.info("%s: attempt %d/%d failed: %s", self.label, failed, attempts, failure)
            if failed >= attempts:
                # Only now, once per call, does the breaker hear of it.
                self.breaker.record_failure(failure, label=self.label)
                if broken:
                    raise CarrierProtocolError(f"{self.label}: {failure}, after {attempts} attempts", field=field)
                raise CarrierUnavailable(f"{self.label}: gave up after {attempts} attempts: {failure}", field=field)
            self.stats.add(retries=1)
            time.sleep(self.retry.delay(failed - 1, rng=self._rng))

    def _answer(self, response: httpx.Response, body: Any, code: str | None, *, what: str, iccid: str | None,
                field: str | None) -> Any:
        status = response.status_code
        says = _carrier_says(body)
        scope = error_scope(code)
        if code == "10000001" or (status in (401, 403) and scope is None):
            raise CarrierAuthError(
                f"{self.label}: the carrier refused username {self.username!r} and its API key "
                f"(HTTP {status}{says}); check the account's username and api_key.",
                field="api_key", carrier_code=code or "")
        if scope == "request" or (not 200 <= status < 300 and iccid is None):
            # About the request or the account: every other SIM would get the same answer.
            raise CarrierAccountError(
                f"{self.label}: {what}: the carrier refused the request itself (HTTP {status}, errorCode "
                f"{code or '-'}: {error_meaning(code)}{'; it says: ' + _message(body) if _message(body) else ''}). "
                f"Stopped here: no other SIM can fare better.", carrier_code=code or "", field=field)
        if status == 404 or code == "20000001":
            raise CarrierNotFound(f"{self.label}: {what}: the carrier does not know ICCID {iccid} "
                                  f"(HTTP {status}{says})", field="iccid")
        if not 200 <= status < 300:
            raise CarrierRequestRejected(f"{self.label}: {what}: refused (HTTP {status}{says})", field=field)
        return body

    def _record(self, entry: Any, page: int | None, index: int | None) -> DeviceRecord:
        where = f"entry {index} of page {page}" if page is not None else "the answer"
        if not isinstance(entry, dict):
            return DeviceRecord(iccid=None, problem=f"{where} is not a JSON object")
        iccid = _text(entry.get("iccid"))
        try:
            dates = {name: parse_carrier_datetime(entry.get(key), field=key) for name, key in
                     (("date_activated", "dateActivated"), ("date_added", "dateAdded"), ("date_updated", "dateUpdated"))}
        except ValueError as exc:
            return DeviceRecord(iccid=iccid, problem=str(exc))
        return DeviceRecord(
            iccid=iccid, status=_text(entry.get("status")), rate_plan=_text(entry.get("ratePlan")),
            communication_plan=_text(entry.get("communicationPlan")), msisdn=_text(entry.get("msisdn")),
            customer=_text(entry.get("customer")), **dates)

    def close(self) -> None:
        super().close()
        self._http.close()


def _retry_after_seconds(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None



def _json_or_none(response: httpx.Response) -> tuple[Any, bool]:
    """(the JSON body, True) or (None, False) when the body is not JSON."""
    try:
        return response.json(), True
    except ValueError:
        return None, False


def _error_code(body: Any) -> str | None:
    """Control Center's errorCode (a string of digits; a number is read as its digits), if any."""
    if not isinstance(body, dict):
        return None
    code = body.get("errorCode")
    if code is None or isinstance(code, bool):
        return None
    return str(code).strip() or None


def _message(body: Any) -> str:
    if isinstance(body, dict) and body.get("errorMessage"):
        return str(body.get("errorMessage"))[:200]
    return ""


def _carrier_says(body: Any) -> str:
    """The carrier's own {"errorMessage", "errorCode"}, when it sent one."""
    code, message = _error_code(body), _message(body)
    if not (code or message):
        return ""
    return f", errorCode {code!s}: {message}"


def call_endpoint(method: str, path: str) -> str:
    """The API operation a call is, in the names of the client's methods (for counting calls)."""
    if method == "PUT":
        return "change_rate_plan"
    if path.endswith("/ctdUsages"):
        return "get_ctd_usage"
    if path.endswith("/usageInZone"):
        return "get_cycle_usage"
    if path == "/usages":
        return "rate_plan_usage"
    return "list_devices" if path == "/devices" else "get_device"


def call_outcome(status: int) -> str:
    """ok, throttled (429; _call also counts 400 + errorCode 40000029 as throttled) or http_<status> otherwise."""
    if 200 <= status < 300:
        return "ok"
    return "throttled" if status == 429 else f"http_{status}"
