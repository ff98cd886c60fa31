"""Benchmark of the carrier sync on PostgreSQL: 100,000 SIMs from the simulator, and a merge of 1,000,000 staged rows.

Run by hand (not in tests), against a database of its own that it creates and migrates:

    .venv/bin/python bench/sync.py [--sims 100000] [--merge-rows 1000000] [--database-url postgres://...]
        [--max-concurrency N] [--carrier-rate R] [--max-in-flight N] [--throttle-status 400|429]
        [--kill-at 0.6 [--only-kill]]

--carrier-rate makes the simulator enforce R calls per second per account (throttling beyond, as Control Center
answers: 400 + errorCode 40000029) and gives the account the same rate_limit_per_second; --max-in-flight makes it
refuse a call beyond N in flight. The table then says how many calls were throttled and the calls/s achieved.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
CARRIER_CALLS_PER_SECOND = 5  # what Control Center asks of a client


def ensure_database(url: str) -> None:
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def start_simulator(sims: int, seed: int, extra: list[str] = ()) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "run_carrier_simulator", "--port", "0", "--sims", str(sims),
         "--seed", str(seed), *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=os.environ.copy())
    line = process.stdout.readline()
    match = re.search(r"(http://127\.0\.0\.1:\d+)/rws/api/v1", line)
    if not match:
        process.kill()
        raise SystemExit(f"the simulator did not start: {line!r}")
    return process, match.group(1)


def fresh_provider(tenant, name: str, url: str, *, rate: float = 9999.99, max_concurrency: int | None = 8):
    from django.db import connection

    from carriers.simulator.fleet import DEMO_API_KEY, DEMO_USERNAME
    from devices.demo import demo_catalogue_upsert
    from rateplans.models import ServiceProvider

    old = ServiceProvider.objects.filter(tenant=tenant, name=name).first()
    if old is not None:
        # Deleting a million devices through the ORM's cascade would take longer than the benchmark.
        with connection.cursor() as cursor:
            for table in ("devices_deviceusage", "devices_devicestaging", "devices_device"):
                column = "device_id IN (SELECT id FROM devices_device WHERE provider_id = %s)" \
                    if table == "devices_deviceusage" else "provider_id = %s"
                cursor.execute(f"DELETE FROM {table} WHERE {column}", [old.pk])  # noqa: S608
        old.delete()
    provider = ServiceProvider.objects.create(
        tenant=tenant, name=name, integration="Jasper", api_base_url=url, username=DEMO_USERNAME,
        api_key=DEMO_API_KEY, billing_timezone="America/Chicago", rate_limit_per_second=f"{rate:.2f}",
        max_pages=100_000, **({"max_concurrency": max_concurrency} if max_concurrency else {}))
    demo_catalogue_upsert(provider=provider)
    return provider


def bench_pull(tenant, *, sims: int, seed: int, usage: bool, max_concurrency: int | None = 8,
               carrier_rate: float | None = None, max_in_flight: int | None = None,
               throttle_status: int = 400) -> list[tuple[str, str, str]]:
    from devices.services import device_sync, usage_sync

    extra = ["--throttle-status", str(throttle_status)]
    if carrier_rate:
        extra += ["--rate-limit", str(carrier_rate)]
    if max_in_flight:
        extra += ["--max-in-flight", str(max_in_flight)]
    process, url = start_simulator(sims, seed, extra)
    try:
        provider = fresh_provider(tenant, "bench: 100k pull", url, rate=carrier_rate or 9999.99,
                                  max_concurrency=max_concurrency)
        print(f"account: max_concurrency={provider.max_concurrency}, rate_limit_per_second={provider.rate_limit_per_second}; "
              f"simulator: {' '.join(extra)}", flush=True)
        started = time.monotonic()
        run = device_sync(provider=provider, full=True)
        total = time.monotonic() - started
        if run.status != "succeeded":
            raise SystemExit(f"device sync failed: {run.error}")
        listing = run.duration_seconds - run.merge_seconds
        rows = [
            (f"device sync: list + stage {run.devices_seen:,} SIMs ({run.pages:,} pages, {run.calls:,} calls, "
             f"{run.throttled:,} throttled)", f"{listing:.1f}", f"{run.calls_per_second or 0:,.1f} calls/s"),
            (f"device sync: merge ({run.inserted:,} inserted)", f"{run.merge_seconds:.2f}", ""),
            ("device sync: total", f"{total:.1f}", f"{run.devices_seen / total:,.0f} SIMs/s"),
        ]
        if usage:
            started = time.monotonic()
            urun = usage_sync(provider=provider)
            total = time.monotonic() - started
            if urun.status != "succeeded":
                raise SystemExit(f"usage sync failed: {urun.error}")
            rows += [
                (f"usage sync: {urun.devices_seen:,} SIMs, {urun.calls:,} calls, {urun.throttled:,} throttled, "
                 f"{urun.rejected:,} rejected ({urun.skipped:,} SIMs skipped by status)",
                 f"{total:.1f}", f"{urun.calls_per_second or 0:,.1f} calls/s"),
                (f"usage sync: write {urun.inserted:,} DeviceUsage rows", f"{urun.merge_seconds:.2f}", ""),
            ]
            calls = run.calls + urun.calls
            rows.append((f"same pull at the carrier's {CARRIER_CALLS_PER_SECOND} calls/s ({calls:,} calls)",
                         f"{calls / CARRIER_CALLS_PER_SECOND:,.0f}",
                         f"= {calls / CARRIER_CALLS_PER_SECOND / 3600:.1f} h"))
        return rows
    finally:
        process.terminate()
        process.wait(timeout=10)


class _WorkerKilled(BaseException):
    """Raised from the progress callback: the sync stops as a killed worker would (nothing marks it failed)."""


def _carrier_requests(url: str) -> int:
    import httpx

    return httpx.get(f"{url}/_sim/stats", timeout=10).json()["requests"]


def bench_kill_resume(tenant, *, sims: int, seed: int, kill_at: float,
                      max_concurrency: int | None = 8) -> list[tuple[str, str, str]]:
    """A device sync and a usage sync each killed at `kill_at` of their work and resumed by the next sync
    (after the dead one's heartbeat went stale), against the same pull uninterrupted: carrier calls."""
    import datetime as dt

    from django.conf import settings
    from django.utils import timezone

    from devices.models import SyncRun
    from devices.services import device_sync, usage_sync

    pages = -(-sims // 50)

    def kill(kind, at):
        def progress(event):
            if event.kind == kind and event.done >= at(event):
                raise _WorkerKilled
        return progress

    def stall():
        SyncRun.objects.filter(status="running").update(
            heartbeat_at=timezone.now() - dt.timedelta(seconds=settings.STAGE_STALL_SECONDS + 1))

    results = []
    for label, killed in (("uninterrupted", False), (f"killed at {kill_at:.0%} and resumed", True)):
        process, url = start_simulator(sims, seed)
        try:
            provider = fresh_provider(tenant, f"bench: kill {label}", url, max_concurrency=max_concurrency)
            started = time.monotonic()
            if killed:
                try:
                    device_sync(provider=provider, full=True, progress=kill("devices", lambda e: kill_at * pages))
                except _WorkerKilled:
                    stall()
            run = device_sync(provider=provider, full=True)
            device_calls = _carrier_requests(url)
            if killed:
                try:
                    usage_sync(provider=provider, progress=kill("usage", lambda e: kill_at * e.total))
                except _WorkerKilled:
                    stall()
            urun = usage_sync(provider=provider)
            seconds = time.monotonic() - started
            if run.status != "succeeded" or urun.status != "succeeded":
                raise SystemExit(f"{label}: {run.error or urun.error}")
            total = _carrier_requests(url)
            resumed = " (resumed)" if run.resumed_from_id and (not killed or urun.resumed_from_id) else ""
            results.append((f"{sims:,} SIMs {label}{resumed}: device list calls / usage calls",
                            f"{seconds:.1f}", f"{device_calls:,} / {total - device_calls:,} = {total:,} calls"))
        finally:
            process.terminate()
            process.wait(timeout=10)
    return results


def stage(provider, run, rows_iter) -> None:
    from django.db import transaction

    from devices import staging

    batch: list[tuple] = []
    for row in rows_iter:
        batch.append(row)
        if len(batch) == 100_000:
            with transaction.atomic():
                staging.staging_write(rows=batch)
            batch = []
    with transaction.atomic():
        staging.staging_write(rows=batch)


def bench_merge(tenant, *, rows: int, seed: int) -> list[tuple[str, str, str]]:
    from django.db import transaction
    from django.utils import timezone

    from carriers.simulator import fleet as demo_fleet
    from devices import staging
    from devices.models import SyncRun

    provider = fresh_provider(tenant, "bench: 1M merge", "http://127.0.0.1:9")
    fleet = demo_fleet.generate_fleet(rows, seed)
    iccids = fleet.iccid.tolist()
    status = [demo_fleet.STATUSES[s] for s in fleet.status.tolist()]
    plans = [demo_fleet.PLAN_CODES[p] for p in fleet.rate_plan.tolist()]
    comms = [demo_fleet.COMMUNICATION_PLANS[c].name for c in fleet.comm_plan.tolist()]
    results = []

    def merge(label: str, *, changed_every: int | None, gone_every: int | None) -> None:
        run = SyncRun.objects.create(provider=provider, kind="full")
        staging.staging_clear(provider_id=provider.pk)

        def rows_iter():
            for i, iccid in enumerate(iccids):
                if gone_every and i % gone_every == 0:
                    continue
                plan = plans[i]
                if changed_every and i % changed_every == 1:
                    allowed = demo_fleet.COMMUNICATION_PLANS[fleet.comm_plan[i]].rate_plans
                    plan = allowed[(allowed.index(plan) + 1) % len(allowed)]
                yield (provider.pk, run.pk, iccid, status[i], plan, comms[i], "", None, None, None, i // 50 + 1, "",
                       fleet.customer_name(i) or "")

        started = time.monotonic()
        stage(provider, run, rows_iter())
        staged = time.monotonic() - started
        started = time.monotonic()
        with transaction.atomic():
            counts = staging.staging_merge(provider_id=provider.pk, run_id=run.pk, now=timezone.now(), mark_missing=True)
        seconds = time.monotonic() - started
        results.append((f"stage (COPY) {label}", f"{staged:.1f}", f"{rows / staged:,.0f} rows/s"))
        results.append((f"merge {label}: +{counts.inserted:,} ~{counts.updated:,} missing {counts.missing:,}",
                        f"{seconds:.1f}", "target <= 60 s" + (" OK" if seconds <= 60 else " MISSED")))

    merge(f"{rows:,} rows into an empty Device table", changed_every=None, gone_every=None)
    merge(f"{rows:,} rows, 10 % changed, 1 % gone", changed_every=10, gone_every=100)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sims", type=int, default=100_000)
    parser.add_argument("--merge-rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-usage", action="store_true", help="skip the usage sync of the pulled SIMs")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/carrieropt_bench_sync")
    parser.add_argument("--max-concurrency", type=int, default=8,
                        help="the account's calls in flight (0: the model's default, one)")
    parser.add_argument("--carrier-rate", type=float, default=None,
                        help="the simulator enforces this many calls/s per account (and the account is set to it)")
    parser.add_argument("--max-in-flight", type=int, default=None, help="the simulator refuses more calls in flight")
    parser.add_argument("--throttle-status", type=int, choices=(400, 429), default=400)
    parser.add_argument("--kill-at", type=float, default=None,
                        help="also kill a device sync and a usage sync at this share of their work (e.g. 0.6) and "
                             "resume them: carrier calls against the same pull uninterrupted")
    parser.add_argument("--only-kill", action="store_true", help="with --kill-at: skip the pull and merge benchmarks")
    args = parser.parse_args()

    if not args.database_url.startswith(("postgres://", "postgresql://")):
        raise SystemExit("--database-url: the benchmark measures PostgreSQL (COPY, ON CONFLICT); give a postgres:// URL")
    os.environ["DATABASE_URL"] = args.database_url
    os.environ.setdefault("DEBUG", "1")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    sys.path.insert(0, str(ROOT))
    ensure_database(args.database_url)

    import django

    django.setup()
    from django.core.management import call_command

    from carrieropt.models import Tenant

    call_command("migrate", verbosity=0)
    tenant, _ = Tenant.objects.get_or_create(slug="bench-sync", defaults={"name": "Sync benchmark"})
    rows = []
    if not args.only_kill:
        rows += bench_pull(tenant, sims=args.sims, seed=args.seed, usage=not args.no_usage,
                           max_concurrency=args.max_concurrency or None, carrier_rate=args.carrier_rate,
                           max_in_flight=args.max_in_flight, throttle_status=args.throttle_status)
        rows += bench_merge(tenant, rows=args.merge_rows, seed=args.seed + 1)
    if args.kill_at is not None:
        if not 0 < args.kill_at < 1:
            raise SystemExit(f"--kill-at {args.kill_at}: a share of the work, between 0 and 1")
        rows += bench_kill_resume(tenant, sims=args.sims, seed=args.seed, kill_at=args.kill_at,
                                  max_concurrency=args.max_concurrency or None)

    width = max(len(r[0]) for r in rows)
    print(f"\n{'step'.ljust(width)} | {'seconds':>8} | rate")
    print(f"{'-' * width}-|-{'-' * 8}-|-{'-' * 20}")
    for step, seconds, rate in rows:
        print(f"{step.ljust(width)} | {seconds:>8} | {rate}")


if __name__ == "__main__":
    main()
