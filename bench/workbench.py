"""Benchmark of the workbench's SIM list on PostgreSQL: pages, filters, sorts and the CSV export of a large session.

Seeds `--sims` SIMs of the demo catalogue, runs one session on them (every stage in this process, no sync),
then times the pages a browser asks for (median of `--repeat`, through Django's test client, so templates
and queries count, the network does not) and the whole CSV export. Keeps its database, so `--reuse` times
the same session again without the setup. Run by hand (not in tests):

    .venv/bin/python bench/workbench.py [--sims 1000000] [--repeat 5] [--reuse]
                                        [--database-url postgres://postgres@127.0.0.1:5432/carrieropt_bench_wb]
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def ensure_database(url: str) -> None:
    # bench/ is not put on the path: its optimizer.py would shadow the optimizer app.
    spec = importlib.util.spec_from_file_location("bench_sync", ROOT / "bench" / "sync.py")
    bench_sync = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_sync)
    bench_sync.ensure_database(url)


def session_run(provider):
    """One session on the stored SIMs, every stage run here as a worker would run it."""
    from sessions import tasks
    from sessions.models import OptimizationSession, SessionStatus, Stage
    from sessions.services import session_start

    session = session_start(provider=provider, sync_devices=False)
    for stage in (Stage.START, Stage.SYNC, Stage.GROUPING, Stage.QUEUEING):
        tasks.run_stage(session.pk, stage)
    for queue_id in session.run.queues.order_by("pk").values_list("pk", flat=True):
        tasks.run_work_item(queue_id)
    tasks.run_stage(session.pk, Stage.FINALIZING)
    session = OptimizationSession.objects.get(pk=session.pk)
    if session.status != SessionStatus.SUCCEEDED:
        raise SystemExit(f"the session did not succeed: {session.status} {session.error}")
    return session


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sims", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--reuse", action="store_true", help="time the last session of the database again")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/carrieropt_bench_wb")
    args = parser.parse_args()

    os.environ["DATABASE_URL"] = args.database_url
    os.environ.setdefault("DEBUG", "1")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    ensure_database(args.database_url)
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client
    from django.urls import reverse

    from devices.demo import demo_seed
    from optimizer.models import DeviceAssignment
    from sessions.models import OptimizationSession

    settings.ALLOWED_HOSTS = ["*"]
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    call_command("migrate", verbosity=0)
    if args.reuse:
        session = OptimizationSession.objects.filter(status="succeeded").latest("created_at")
    else:
        t0 = time.monotonic()
        provider = demo_seed(devices=args.sims, seed=args.seed).provider
        print(f"seeded {args.sims:,} SIMs in {time.monotonic() - t0:.1f} s", flush=True)
        t0 = time.monotonic()
        session = session_run(provider)
        print(f"session {session.guid} in {time.monotonic() - t0:.1f} s", flush=True)
    # Time the pages as a running system serves them: autovacuum would have analyzed the freshly seeded tables
    # (the customer filter's plan, on stale statistics, took 1.7 s instead of 0.3 s at 185k SIMs).
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE devices_device")
        cursor.execute("ANALYZE optimizer_deviceassignment")
    run = DeviceAssignment.objects.filter(run_id=session.run_id)
    sims, changed = run.count(), run.filter(changed=True).count()
    moved = run.filter(changed=True).select_related("current_plan", "recommended_plan").first()
    group = run.values_list("comm_group_id", flat=True).first()
    from devices.models import Customer

    customer = Customer.objects.filter(tenant=session.tenant).order_by("name").first()

    user, _ = get_user_model().objects.get_or_create(username="bench", defaults={"is_staff": True})
    session.tenant.users.add(user)
    client = Client()
    client.force_login(user)
    sims_url = reverse("dashboard:session-sims", args=[session.guid])
    pages = [
        ("session page (totals, chart, matrix)", reverse("dashboard:session-detail", args=[session.guid]), {}),
        ("usage against allowances (every group)", reverse("dashboard:session-usage", args=[session.guid]), {}),
        ("SIM list, first page", sims_url, {}),
        ("changed only", sims_url, {"changed": "true"}),
        ("changed, largest saving first", sims_url, {"changed": "true", "sort": "-saving"}),
        ("one group", sims_url, {"group": group}),
        ("one move (from plan, to plan)", sims_url,
         {"from_plan": moved.current_plan.code, "to_plan": moved.recommended_plan.code}),
        ("ICCID search", sims_url, {"iccid": moved.iccid[:-2]}),
        (f"one customer ({customer.name})", sims_url, {"customer": customer.pk}),
        ("one customer, changed, largest saving first", sims_url,
         {"customer": customer.pk, "changed": "true", "sort": "-saving"}),
        ("page 1,000 of the list", sims_url, {"page": 1000}),
        ("last page of the list", sims_url, {"page": -(-sims // 50)}),
        ("page 10,000 of the changes, largest saving first", sims_url,
         {"changed": "true", "sort": "-saving", "page": min(10_000, -(-changed // 50))}),
        ("last page of the changes", sims_url, {"changed": "true", "page": -(-changed // 50)}),
        ("API assignments, changed, by saving", reverse("api:session-assignments", args=[session.guid]),
         {"changed": "true", "sort": "-saving"}),
        ("API assignments, one customer", reverse("api:session-assignments", args=[session.guid]),
         {"customer": customer.pk}),
        ("API page 5,000 of the changes by saving (100 a page)", reverse("api:session-assignments", args=[session.guid]),
         {"changed": "true", "sort": "-saving", "page": min(5_000, -(-changed // 100))}),
        ("one SIM's page", reverse("dashboard:session-sim", args=[session.guid, moved.iccid]), {}),
        ("apply page (Go/No-Go, budget)", reverse("pushes:session-apply", args=[session.guid]), {}),
        ("sessions list", reverse("dashboard:session-list"), {}),
        ("account page (history)", reverse("dashboard:provider-detail", args=[session.provider_id]), {}),
    ]
    rows = []
    for label, url, params in pages:
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            response = client.get(url, params)
            times.append((time.perf_counter() - t0) * 1000)
            if response.status_code != 200:
                raise SystemExit(f"{label}: HTTP {response.status_code}")
        rows.append((label, f"{statistics.median(times):,.0f} ms", f"{min(times):,.0f} ms"))
    t0 = time.perf_counter()
    response = client.get(reverse("dashboard:session-sims-csv", args=[session.guid]))
    size = lines = 0
    for chunk in response.streaming_content:
        size += len(chunk)
        lines += chunk.count(b"\n")
    csv_seconds = time.perf_counter() - t0
    rows.append((f"CSV export, all {lines - 1:,} rows ({size / 1e6:,.0f} MB)", f"{csv_seconds:,.1f} s", ""))

    print(f"\nsession {session.guid}: {sims:,} SIMs, {changed:,} changed; {args.repeat} runs each\n")
    width = max(len(r[0]) for r in rows)
    print(f"{'request':<{width}}  {'median':>9}  {'best':>8}")
    for label, median, best in rows:
        print(f"{label:<{width}}  {median:>9}  {best:>8}")


if __name__ == "__main__":
    main()
