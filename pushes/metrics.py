"""Prometheus metrics of rate-plan pushes (each account's latest), read from the database at scrape time."""
from __future__ import annotations

from collections.abc import Iterator

from django.db.models import Max
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, Metric

from devices.metrics import PROVIDER_LABELS
from pushes.counts import push_counts_many, push_rate_live
from pushes.models import ChangeStatus, RatePlanPush

PUSH_LABELS = [*PROVIDER_LABELS, "push_id"]


def collect(labels: dict[int, list[str]]) -> Iterator[Metric]:
    now = timezone.now()
    latest = (RatePlanPush.objects.order_by().values("provider_id").annotate(last=Max("pk"))
              .values_list("last", flat=True))
    pushes = list(RatePlanPush.objects.filter(pk__in=list(latest)).order_by("provider_id"))
    counts = push_counts_many(push_ids=[p.pk for p in pushes])
    info = GaugeMetricFamily("carrieropt_push_info", "The account's latest push: 1, with its status.",
                             labels=[*PUSH_LABELS, "status"])
    changes = GaugeMetricFamily("carrieropt_push_changes", "Changes of the account's latest push by outcome.",
                                labels=[*PUSH_LABELS, "status"])
    rate = GaugeMetricFamily("carrieropt_push_rate_per_minute",
                             "SIMs per minute the latest push achieves (so far, while it runs).", labels=PUSH_LABELS)
    needed = GaugeMetricFamily(
        "carrieropt_push_remaining_minutes_needed",
        "Minutes the open changes still need at the achieved rate (the planned rate before one is measured).",
        labels=PUSH_LABELS)
    ends = GaugeMetricFamily("carrieropt_push_period_end_timestamp_seconds",
                             "When the billing period the push must finish in ends (Unix time).", labels=PUSH_LABELS)
    for push in pushes:
        row = [*labels[push.provider_id], str(push.pk)]
        count = counts[push.pk]
        info.add_metric([*row, push.status], 1)
        for status in ChangeStatus.values:
            changes.add_metric([*row, status], getattr(count, status))
        live = push_rate_live(push=push, processed=count.processed, now=now)
        if live:
            rate.add_metric(row, live)
        per_minute = live or push.rate_per_minute
        if push.is_active and per_minute:
            needed.add_metric(row, count.remaining / per_minute)
        ends.add_metric(row, push.period_ends_at.timestamp())
    yield from (info, changes, rate, needed, ends)
