"""Benchmark of a push that cannot finish: 100,000 changes with 20 minutes left in the billing period.

The push runs for real against the simulator at the account's rate limit (Control Center's 5 calls/s by
default); the clock it checks the time left against is the decision's moment plus the real time elapsed,
so the run is what would happen if the period really ended `--minutes-left` minutes from the start.
Takes about `--minutes-left` minus PUSH_MIN_SLACK_MINUTES of wall time. Run by hand (not in tests):

    .venv/bin/python bench/push_deadline.py [--changes 100000] [--minutes-left 20] [--rate-limit 5]
                                            [--database-url postgres://...]
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def planned_moves(provider):
    """Every SIM moved to the next plan its communication plan allows, with a saving to order them by."""
    from decimal import Decimal

    from devices.models import Device
    from pushes.create import PlannedChange

    allowed = {c.pk: list(c.rate_plans.order_by("included_mb", "code")) for c in provider.communication_plans.all()}
    changes = []
    rows = Device.objects.filter(provider=provider).order_by("iccid").values_list(
        "pk", "iccid", "communication_plan_id", "rate_plan_id", "rate_plan_code")
    for i, (pk, iccid, comm, plan_id, plan_code) in enumerate(rows):
        plans = allowed[comm]
        current = next(k for k, p in enumerate(plans) if p.code == plan_code)
        target = plans[(current + 1) % len(plans)]
        changes.append(PlannedChange(device_id=pk, iccid=iccid, from_plan_id=plan_id, from_plan_code=plan_code,
                                     to_plan_id=target.pk, to_plan_code=target.code,
                                     saving=Decimal((i * 7919) % 1000) / 100))
    return changes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=100_000)
    parser.add_argument("--minutes-left", type=float, default=20.0)
    parser.add_argument("--rate-limit", type=int, default=5, help="the account's carrier calls per second")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/carrieropt_bench_push")
    args = parser.parse_args()

    os.environ["DATABASE_URL"] = args.database_url
    os.environ.setdefault("DEBUG", "1")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    if args.database_url.startswith("postgres"):
        import importlib.util

        # bench/ is not put on the path: its optimizer.py would shadow the optimizer app.
        spec = importlib.util.spec_from_file_location("bench_sync", ROOT / "bench" / "sync.py")
        bench_sync = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(bench_sync)
        bench_sync.ensure_database(args.database_url)
    import django

    django.setup()
    from django.conf import settings
    from django.core import mail
    from django.core.management import call_command

    from carriers.simulator.testing import running_simulator
    from devices.demo import demo_seed
    from pushes.batches import push_batch_run
    from pushes.create import push_create
    from pushes.decide import minutes_to_send
    from pushes.models import BatchStatus, RatePlanPush, RatePlanPushBatch
    from pushes.verify import push_verify_run
    from rateplans.models import ServiceProvider
    from rateplans.services import billing_period_current

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    mail.outbox = []
    call_command("migrate", verbosity=0)
    RatePlanPush.objects.all().delete()
    ServiceProvider.objects.all().delete()
    print(f"seeding {args.changes:,} SIMs …", flush=True)
    provider = demo_seed(devices=args.changes, seed=args.seed).provider
    with running_simulator(sims=args.changes, seed=args.seed) as server:
        provider.api_base_url, provider.rate_limit_per_second, provider.max_concurrency = server.url, args.rate_limit, 1
        provider.save()
        changes = planned_moves(provider)
        period = billing_period_current(provider=provider)
        start = period.ends_at() - dt.timedelta(minutes=args.minutes_left)
        began = time.monotonic()

        def clock() -> dt.datetime:
            return start + dt.timedelta(seconds=time.monotonic() - began)

        push = push_create(provider=provider, changes=changes, period=period, trigger="bench", now=start)
        print(push.decision_reason, flush=True)
        batches = 0
        stopped_at_minutes_left = None
        while True:
            batch = RatePlanPushBatch.objects.filter(push=push, status=BatchStatus.PENDING).order_by("number").first()
            push.refresh_from_db()
            if batch is None or push.status != "running":
                break
            outcome = push_batch_run(batch_id=batch.pk, now=clock())
            if outcome == "deadline":
                stopped_at_minutes_left = (period.ends_at() - clock()).total_seconds() / 60
                break
            batches += 1
            print(f"  batch {batch.number}: {outcome}, {(period.ends_at() - clock()).total_seconds() / 60:.1f} "
                  f"min left", flush=True)
        sent_seconds = time.monotonic() - began
        push.refresh_from_db()
        if push.status == "verifying":
            settings.PUSH_VERIFY_DELAY_SECONDS = 0
            while push_verify_run(push_id=push.pk) not in ("done", "not_ours"):
                pass
        push.refresh_from_db()
        ended_left = (period.ends_at() - clock()).total_seconds() / 60

    before = minutes_to_send(args.changes, push.rate_per_minute) * 2 / 3  # the old rule sent all, unverified
    rows = [
        ("changes planned", f"{args.changes:,}"),
        ("minutes left at the decision", f"{args.minutes_left:g}"),
        ("account rate limit", f"{args.rate_limit} calls/s (at most {args.rate_limit * 30} SIMs/min)"),
        ("rate the decision planned with", f"{push.rate_per_minute:.0f} SIMs/min ({push.rate_source})"),
        ("rate the push measured", f"{push.measured_rate or 0:.1f} SIMs/min"),
        ("decision", f"{push.decision}: expected {push.expected:,}"),
        ("batches sent", f"{batches:,} of {push.batches.count():,}"),
        ("applied (sent and accepted)", f"{push.applied:,}"),
        ("verified on the carrier", f"{push.changes.filter(verified=True).count():,}"),
        ("not sent: billing period ending", f"{push.not_sent:,}"),
        ("minutes left when it stopped", "-" if stopped_at_minutes_left is None else f"{stopped_at_minutes_left:.1f}"),
        ("minutes left when verified", f"{ended_left:.1f}"),
        ("final status", push.status),
        ("wall minutes (send / all)", f"{sent_seconds / 60:.1f} / {(time.monotonic() - began) / 60:.1f}"),
        ("before this change: minutes needed (computed)",
         f"{before:,.0f}, ending {before - args.minutes_left:,.0f} min after the period"),
    ]
    width = max(len(k) for k, _ in rows)
    print()
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    for email in mail.outbox:
        print(f"\ne-mail to {', '.join(email.to)}: {email.subject}")
        print("\n".join(email.body.splitlines()[:8]))


if __name__ == "__main__":
    main()
