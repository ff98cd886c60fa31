"""The carrier adapter interface the sync talks to, and the carrier-neutral records it returns."""
from __future__ import annotations

import abc
import datetime as dt
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from carriers.errors import CarrierError, PageLimitExceeded

MAX_PAGE_SIZE = 50
BYTES_PER_MB = 1024 * 1024  # the API reports usage in bytes; everything above it works in MB


@dataclass(frozen=True)
class DeviceRecord:
    """One SIM as a device list reports it, in carrieropt's words; values unchecked.

    `problem` is set when the carrier's entry could not even be read (not an
    object, a date that is not a date); the sync rejects such rows with it.
    """

    iccid: str | None
    status: str | None = None
    rate_plan: str | None = None
    communication_plan: str | None = None
    msisdn: str | None = None
    date_activated: dt.datetime | None = None
    date_added: dt.datetime | None = None
    date_updated: dt.datetime | None = None
    problem: str = ""
    # Only Get Device Details names the SIM's customer (Search Devices does not): None here means "not read".
    customer: str | None = None


@dataclass(frozen=True)
class DevicePage:
    page_number: int
    last_page: bool
    devices: list[DeviceRecord]


@dataclass(frozen=True)
class DeviceDetails:
    iccid: str
    status: str | None
    rate_plan: str | None
    communication_plan: str | None
    msisdn: str | None = None
    date_activated: dt.datetime | None = None
    date_added: dt.datetime | None = None
    date_updated: dt.datetime | None = None
    customer: str = ""  # the carrier's customer of the SIM ("an enterprise or business unit"); "" for none


@dataclass(frozen=True)
class CtdUsage:
    """Cycle-to-date usage of one SIM, as of `measured_at` (when carrieropt asked)."""

    iccid: str
    ctd_bytes: int
    status: str | None
    rate_plan: str | None
    measured_at: dt.datetime


@dataclass(frozen=True)
class CycleUsage:
    """A SIM's data usage in one billing cycle (the whole cycle once it has ended), as the carrier bills it.

    `rate_plan` is the plan the carrier reports the usage under for that cycle (None when it names none)."""

    iccid: str
    data_bytes: int
    rate_plan: str | None
    cycle_start: dt.date


@dataclass(frozen=True)
class UsagePage:
    """One page of Get Usage by Rate Plan: the SIMs billed on one rate plan in one cycle. `problems` names the
    entries that could not be read (their SIMs are asked one by one instead)."""

    rate_plan: str
    cycle_start: dt.date
    page_number: int
    last_page: bool
    usages: list[CycleUsage]
    problems: list[str] = field(default_factory=list)


@dataclass
class ClientStats:
    """What one client did; thread-safe counters read by the sync into SyncRun."""

    calls: int = 0
    retries: int = 0
    failures: int = 0
    throttled: int = 0
    timeouts: int = 0
    first_call_at: float | None = None  # time.monotonic() when the first call started
    last_answer_at: float | None = None  # ... and when the latest one ended
    # {(endpoint, outcome): calls} not yet handed over by take_calls (outcome: ok, throttled, http_<code>, ...).
    by_call: Counter = field(default_factory=Counter, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def call_started(self) -> None:
        with self._lock:
            self.calls += 1
            if self.first_call_at is None:
                self.first_call_at = time.monotonic()

    def call_ended(self) -> None:
        with self._lock:
            self.last_answer_at = time.monotonic()

    @property
    def calls_per_second(self) -> float | None:
        """Calls made per second between the first call's start and the last answer (None before two calls)."""
        with self._lock:
            if self.calls < 2 or self.first_call_at is None or self.last_answer_at is None:
                return None
            span = self.last_answer_at - self.first_call_at
            return self.calls / span if span > 0 else None
    def count_call(self, endpoint: str, outcome: str) -> None:
        with self._lock:
            self.by_call[(endpoint, outcome)] += 1

    def take_calls(self) -> dict[tuple[str, str], int]:
        """The calls counted since the last take, by (endpoint, outcome); counting starts afresh."""
        with self._lock:
            taken, self.by_call = dict(self.by_call), Counter()
        return taken


class CarrierClient(abc.ABC):
    """One carrier account's API. Subclasses implement the four calls; paging and fan-out live here.

    A client is used by one sync at a time and closed after it; the rate and
    concurrency budget is shared per account (see limits.account_limiter).
    """

    integration: str = ""

    def __init__(self, *, label: str, max_concurrency: int, max_pages: int):
        self.label = label
        self.max_concurrency = max(1, int(max_concurrency))
        self.max_pages = max(1, int(max_pages))
        self.stats = ClientStats()
        # Called with the stats when the client is closed (devices.clients stores the call counts).
        self.on_close: Callable[[ClientStats], None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=self.max_concurrency, thread_name_prefix="carrier")

    # -- the adapter interface -------------------------------------------------------------------
    @abc.abstractmethod
    def list_devices_page(self, *, modified_since: dt.datetime, page_number: int,
                          page_size: int = MAX_PAGE_SIZE) -> DevicePage:
        """One page of the SIMs changed since `modified_since`, oldest change first."""

    @abc.abstractmethod
    def get_device(self, iccid: str) -> DeviceDetails:
        """Details of one SIM."""

    @abc.abstractmethod
    def get_ctd_usage(self, iccid: str) -> CtdUsage:
        """Cycle-to-date usage of one SIM."""

    @abc.abstractmethod
    def change_rate_plan(self, iccid: str, rate_plan: str, effective_date: dt.date | None = None) -> str:
        """Move one SIM to `rate_plan`; returns the ICCID the carrier confirmed."""

    # Usage of a given cycle (final usage of an ended one): integrations that offer it override these two.
    def rate_plan_usage_page(self, *, rate_plan: str, cycle_start: dt.date, page_number: int,
                             page_size: int = MAX_PAGE_SIZE) -> UsagePage:
        """One page of the usage of the SIMs on (non-shared) `rate_plan` in the cycle starting `cycle_start`."""
        raise NotImplementedError(f"{type(self).__name__} cannot read usage by rate plan")

    def get_cycle_usage(self, iccid: str, *, cycle_start: dt.date) -> CycleUsage:
        """One SIM's usage in the cycle starting `cycle_start`."""
        raise NotImplementedError(f"{type(self).__name__} cannot read one cycle's usage of a SIM")

    # -- built on the interface ------------------------------------------------------------------
    def iter_device_pages(self, *, modified_since: dt.datetime, page_size: int = MAX_PAGE_SIZE,
                          first_page: int = 1) -> Iterator[DevicePage]:
        """Every page from `first_page` (a resumed sync starts after its checkpoint) up to the one that says
        lastPage, in page order.

        The API has no total count, so the next page is asked for while the
        current one is processed (one page ahead, and with a concurrency budget
        above 1 that many more); the executor has max_concurrency threads, so
        never more calls are in flight than the account allows. Answers past
        the last page are dropped (at most max_concurrency wasted calls per sync).
        """
        pending: deque[tuple[int, Future]] = deque()
        stopped = threading.Event()

        def fetch(page_number: int, previous: Future | None) -> DevicePage | None:
            # A page asked for ahead is not asked at all once the list has stopped: its caller has gone, or the
            # page before it failed for good (with one call in flight that page has ended by now, so an outage
            # costs the failing page's attempts and not one call more).
            if stopped.is_set() or (previous is not None and previous.done()
                                    and (previous.cancelled() or previous.exception() is not None)):
                return None
            return self.list_devices_page(modified_since=modified_since, page_number=page_number, page_size=page_size)

        next_page, previous = first_page, None
        try:
            while True:
                while len(pending) < self.max_concurrency + 1 and next_page <= self.max_pages:
                    previous = self._executor.submit(fetch, next_page, previous)
                    pending.append((next_page, previous))
                    next_page += 1
                if not pending:
                    raise PageLimitExceeded(
                        f"{self.label}: the device list did not end (no lastPage) within max_pages={self.max_pages}; "
                        f"raise the account's max_pages if the fleet really has more than "
                        f"{self.max_pages * page_size:,} changed SIMs", field="max_pages")
                _, future = pending.popleft()
                page = future.result()
                yield page
                if page.last_page:
                    return
        finally:
            stopped.set()
            for _, future in pending:
                future.cancel()

    def iter_rate_plan_usages(self, *, rate_plan: str, cycle_start: dt.date,
                              page_size: int = MAX_PAGE_SIZE) -> Iterator[UsagePage]:
        """Every page of `rate_plan`'s usage in the cycle starting `cycle_start`, in order (one call at a time)."""
        for page_number in range(1, self.max_pages + 1):
            page = self.rate_plan_usage_page(rate_plan=rate_plan, cycle_start=cycle_start, page_number=page_number,
                                             page_size=page_size)
            yield page
            if page.last_page:
                return
        raise PageLimitExceeded(
            f"{self.label}: the usage of rate plan {rate_plan!r} did not end (no lastPage) within "
            f"max_pages={self.max_pages}", field="max_pages")

    def iter_ctd_usages(self, iccids: Iterable[str]) -> Iterator[tuple[str, CtdUsage | CarrierError]]:
        """Usage of each ICCID, in completion order, with at most 2 x max_concurrency calls queued.

        An error about one SIM (unknown ICCID, refused request) is yielded in
        its place; any other error (credentials, circuit open, carrier down)
        is raised and ends the iteration.
        """
        return self._per_sim(self.get_ctd_usage, iccids)

    def iter_device_details(self, iccids: Iterable[str]) -> Iterator[tuple[str, DeviceDetails | CarrierError]]:
        """Details of each ICCID (the customer, which the device list does not carry), as iter_ctd_usages."""
        return self._per_sim(self.get_device, iccids)

    def iter_cycle_usages(self, iccids: Iterable[str], *, cycle_start: dt.date
                          ) -> Iterator[tuple[str, CycleUsage | CarrierError]]:
        """Each ICCID's usage in the cycle starting `cycle_start`, like iter_ctd_usages."""
        return self._per_sim(lambda iccid: self.get_cycle_usage(iccid, cycle_start=cycle_start), iccids)

    def _per_sim(self, call: Callable[[str], object], iccids: Iterable[str]) -> Iterator[tuple[str, object]]:
        window = 2 * self.max_concurrency
        pending: dict[Future, str] = {}
        iterator = iter(iccids)
        exhausted = False
        try:
            while True:
                while not exhausted and len(pending) < window:
                    iccid = next(iterator, None)
                    if iccid is None:
                        exhausted = True
                        break
                    pending[self._executor.submit(call, iccid)] = iccid
                if not pending:
                    return
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    iccid = pending.pop(future)
                    try:
                        yield iccid, future.result()
                    except CarrierError as exc:
                        if not exc.per_device:
                            raise
                        yield iccid, exc
        finally:
            for future in pending:
                future.cancel()

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        if self.on_close is not None:
            self.on_close(self.stats)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __repr__(self):
        return f"<{type(self).__name__} {self.label}>"

