"""Benchmark of the carrier sync on PostgreSQL: 100,000 SIMs from the simulator, and a merge of 1,000,000 staged rows.

Run by hand (not in tests), against a database of its own that it creates and migrates:

    .venv/bin/python bench/sync.py [--sims 100000] [--merge-rows 1000000] [--database-url postgres://...]
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


def start_simulator(sims: int, seed: int) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "run_carrier_simulator", "--port", "0", "--sims", str(sims),
         "--seed", str(seed)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ.copy())
    line = process.stdout.readline()
    match = re.search(r"(http://127\.0\.0\.1:\d+)/rws/api/v1", line)
    if not match:
        process.kill()
        raise SystemExit(f"the simulator did not start: {line!r}")
    return process, match.group(1)


def fresh_provider(tenant, name: str, url: str):
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
        api_key=DEMO_API_KEY, billing_timezone="America/Chicago", rate_limit_per_second="9999.99",
        max_concurrency=8, max_pages=100_000)
    demo_catalogue_upsert(provider=provider)
    return provider


def bench_pull(tenant, *, sims: int, seed: int, usage: bool) -> list[tuple[str, str, str]]:
    from devices.services import device_sync, usage_sync

    process, url = start_simulator(sims, seed)
    try:
        provider = fresh_provider(tenant, "bench: 100k pull", url)
        started = time.monotonic()
        run = device_sync(provider=provider, full=True)
        total = time.monotonic() - started
        if run.status != "succeeded":
            raise SystemExit(f"device sync failed: {run.error}")
        listing = run.duration_seconds - run.merge_seconds
        rows = [
            (f"device sync: list + stage {run.devices_seen:,} SIMs ({run.pages:,} pages, {run.calls:,} calls)",
             f"{listing:.1f}", f"{run.pages / listing:,.0f} pages/s"),
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
                (f"usage sync: {urun.devices_seen:,} ctdUsages calls ({urun.skipped:,} SIMs skipped by status)",
                 f"{total:.1f}", f"{urun.calls / total:,.0f} calls/s"),
                (f"usage sync: write {urun.inserted:,} DeviceUsage rows", f"{urun.merge_seconds:.2f}", ""),
            ]
            calls = run.pages + urun.devices_seen
            rows.append((f"same pull at the carrier's {CARRIER_CALLS_PER_SECOND} calls/s ({calls:,} calls)",
                         f"{calls / CARRIER_CALLS_PER_SECOND:,.0f}",
                         f"= {calls / CARRIER_CALLS_PER_SECOND / 3600:.1f} h"))
        return rows
    finally:
        process.terminate()
        process.wait(timeout=10)


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
                yield (provider.pk, run.pk, iccid, status[i], plan, comms[i], "", None, None, None, i // 50 + 1, "")

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
    rows = bench_pull(tenant, sims=args.sims, seed=args.seed, usage=not args.no_usage)
    rows += bench_merge(tenant, rows=args.merge_rows, seed=args.seed + 1)

    width = max(len(r[0]) for r in rows)
    print(f"\n{'step'.ljust(width)} | {'seconds':>8} | rate")
    print(f"{'-' * width}-|-{'-' * 8}-|-{'-' * 20}")
    for step, seconds, rate in rows:
        print(f"{step.ljust(width)} | {seconds:>8} | {rate}")


if __name__ == "__main__":
    main()
