"""Benchmark: one whole session end to end on PostgreSQL, carrier simulator and a 2-worker cluster.

Run by hand (not part of the tests):

    .venv/bin/python bench/session.py --sims 100000
    .venv/bin/python bench/session.py --sims 1000000 --no-sync   # optimize stored SIMs only
    .venv/bin/python bench/session.py --sims 1000000 --warm      # the daily background sync first, then a session

--warm runs the account's background sync (devices.tasks.background_sync, what the django-q2 schedule runs
every BACKGROUND_SYNC_HOURS) before the session, as the product does through the cycle: the session in the
optimization window then syncs devices incrementally and tops up only usage older than USAGE_MAX_AGE_HOURS.
The background sync's seconds and carrier calls are printed apart from the session's.
    .venv/bin/python bench/session.py --sims 100000 --no-sync --pooling account --db carrieropt_bench_pools
        # the account pools its shared plans account-wide (or per customer): the groups are one pool scope

It creates (and drops afterwards) the database `carrieropt_bench` on the local PostgreSQL, starts the
simulator with no rate limit and `qcluster` with 2 workers, runs one session and prints seconds per stage.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PG = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432")
DB = "carrieropt_bench"  # --db sets it


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def recreate_database() -> None:
    import psycopg

    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB}"')


def spawn(args, env, log):
    return subprocess.Popen([sys.executable, "manage.py", *args], cwd=ROOT, env=env, stdout=log,  # noqa: S603
                            stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc) -> None:
    from carrieropt.processes import process_stop

    if proc is not None:
        process_stop(proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sims", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--method", default="certified", choices=["certified", "legacy"])
    parser.add_argument("--no-sync", action="store_true", help="seed SIMs and usage directly, skip the carrier sync")
    parser.add_argument("--warm", action="store_true",
                        help="run the account's background sync before the session (the session then tops up)")
    parser.add_argument("--pooling", default="group", choices=["group", "customer", "account"],
                        help="how the account pools its shared plans (ServiceProvider.pooling)")
    parser.add_argument("--db", default="carrieropt_bench", help="database to create and drop (another bench may use the default)")
    args = parser.parse_args()
    global DB
    DB = args.db

    recreate_database()
    env = {**os.environ, "DEBUG": "1", "DATABASE_URL": f"{PG}/{DB}", "Q_WORKERS": str(args.workers),
           "CARRIEROPT_VAR_DIR": str(ROOT / "var" / "bench")}
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from carrieropt.models import Tenant
    from carriers.simulator.fleet import DEMO_API_KEY, DEMO_USERNAME
    from devices.demo import demo_catalogue_upsert, demo_seed
    from rateplans.models import ServiceProvider
    from sessions.models import OptimizationSession
    from sessions.services import session_start

    log = open(ROOT / "var" / "bench-session.log", "ab")  # noqa: SIM115
    simulator = cluster = None
    try:
        t0 = time.monotonic()
        if args.no_sync:
            provider = demo_seed(devices=args.sims, seed=args.seed).provider
            print(f"seeded {args.sims:,} SIMs in {time.monotonic() - t0:.1f}s")
        else:
            port = free_port()
            simulator = spawn(["run_carrier_simulator", "--port", str(port), "--sims", str(args.sims),
                               "--seed", str(args.seed)], env, log)
            tenant = Tenant.objects.create(name="Bench", slug="bench")
            provider = ServiceProvider.objects.create(
                tenant=tenant, name="Bench carrier", integration="Jasper", api_base_url=f"http://127.0.0.1:{port}",
                username=DEMO_USERNAME, api_key=DEMO_API_KEY, billing_timezone="America/Chicago",
                billing_cycle_end_day=31, rate_limit_per_second=5000, max_concurrency=8)
            demo_catalogue_upsert(provider=provider)
            deadline = time.monotonic() + 120
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise SystemExit("simulator did not start; see var/bench-session.log") from None
                    time.sleep(0.2)
            print(f"simulator up with {args.sims:,} SIMs in {time.monotonic() - t0:.1f}s")
        ServiceProvider.objects.filter(pk=provider.pk).update(pooling=args.pooling)
        provider.refresh_from_db()
        background = None
        if args.warm and not args.no_sync:
            background = warm(provider)
        cluster = spawn(["qcluster"], env, log)
        started = time.monotonic()
        session = session_start(provider=provider, method=args.method, sync_devices=not args.no_sync)
        last = -1
        while True:
            session = OptimizationSession.objects.get(pk=session.pk)
            if session.progress != last:
                print(f"  {time.monotonic() - started:7.1f}s  {session.progress:3d}%  {session.stage}", flush=True)
                last = session.progress
            if not session.is_active:
                break
            if cluster.poll() is not None:
                raise SystemExit("qcluster died; see var/bench-session.log")
            time.sleep(0.25)
        total = time.monotonic() - started
    finally:
        stop(cluster)
        stop(simulator)
        log.close()

    print()
    if background is not None:
        print(f"background sync before the session: {background['seconds']:.1f}s, {background['calls']:,} carrier calls "
              f"({background['calls'] / 5 / 3600:.1f} h at 5 calls/s)")
    session_calls = sync_calls(provider, since=session.created_at)
    print(f"session {session.pk}: {session.status} {session.error}  (its sync: {session_calls:,} carrier calls)")
    print(f"{'stage':<12} {'seconds':>9}")
    for stage in ("start", "sync", "grouping", "queueing", "optimizing", "finalizing"):
        timing = session.stage_timings.get(stage, {})
        if "seconds" in timing:
            print(f"{stage:<12} {timing['seconds']:>9.2f}")
        elif "started" in timing and "finished" in timing:
            secs = (dt.datetime.fromisoformat(timing["finished"]) - dt.datetime.fromisoformat(timing["started"])).total_seconds()
            print(f"{stage:<12} {secs:>9.2f}")
    print(f"{'total':<12} {total:>9.2f}   ({args.sims:,} SIMs, {args.workers} workers, method {args.method}, "
          f"sync {'off' if args.no_sync else 'on'}, pooling {args.pooling})")
    if session.optimized_cost is not None:
        gap = ("" if not session.lower_bound else
               f"  gap {(session.optimized_cost - session.lower_bound) / session.lower_bound * 100:.4f} %")
        print(f"current {session.current_cost:,.2f}  optimized {session.optimized_cost:,.2f}  "
              f"bound {session.lower_bound if session.lower_bound is None else f'{session.lower_bound:,.2f}'}{gap}  "
              f"devices {session.device_count:,}")
        items = session.run.queues.values_list("comm_group__name", "scope")
        print("work items: " + "; ".join(f"{name} (scope of {len(scope)} groups)" if scope else name
                                         for name, scope in items))


def sync_calls(provider, *, since=None) -> int:
    from django.db.models import Sum

    from devices.models import SyncRun

    runs = SyncRun.objects.filter(provider=provider)
    if since is not None:
        runs = runs.filter(started_at__gte=since)
    return runs.aggregate(calls=Sum("calls"))["calls"] or 0


def warm(provider) -> dict:
    """The account's background sync, in this process, timed."""
    from devices.tasks import background_sync

    t0 = time.monotonic()
    outcome = background_sync(provider.pk)
    seconds = time.monotonic() - t0
    print(f"background sync in {seconds:.1f}s: {outcome}", flush=True)
    return {"seconds": seconds, "calls": sync_calls(provider)}


if __name__ == "__main__":
    main()
