"""Prometheus metrics of the carrier side, read from the database at scrape time: calls by outcome, sync rates."""
from __future__ import annotations

from collections.abc import Iterator

from django.db.models import Max
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from devices.models import CarrierCallCount, SyncRun, SyncStatus
from rateplans.models import ServiceProvider

PROVIDER_LABELS = ["provider_id", "provider", "tenant"]


def provider_labels() -> dict[int, list[str]]:
    """{provider id: [id, name, tenant name]}: the labels every per-account metric carries."""
    return {pk: [str(pk), name, tenant] for pk, name, tenant in
            ServiceProvider.objects.values_list("pk", "name", "tenant__name")}


def collect(labels: dict[int, list[str]]) -> Iterator[Metric]:
    calls = CounterMetricFamily(
        "carrieropt_carrier_calls", "HTTP calls to the carrier API by endpoint and outcome (ok, throttled, timeout, "
        "connection_error, http_<status>), retries included; added when a sync or push batch run closes its client.",
        labels=[*PROVIDER_LABELS, "endpoint", "outcome"])
    for row in CarrierCallCount.objects.order_by("provider_id", "endpoint", "outcome"):
        calls.add_metric([*labels[row.provider_id], row.endpoint, row.outcome], row.calls)
    yield calls

    rate = GaugeMetricFamily("carrieropt_sync_calls_per_second",
                             "Carrier calls per second of the account's last successful sync of this kind.",
                             labels=[*PROVIDER_LABELS, "kind"])
    last_ok = GaugeMetricFamily("carrieropt_sync_last_success_timestamp_seconds",
                                "When the account's last successful sync of this kind finished (Unix time).",
                                labels=[*PROVIDER_LABELS, "kind"])
    latest = (SyncRun.objects.filter(status=SyncStatus.SUCCEEDED).order_by().values("provider_id", "kind")
              .annotate(last=Max("pk")).values_list("last", flat=True))
    for run in SyncRun.objects.filter(pk__in=list(latest)).order_by("provider_id", "kind"):
        if run.duration_seconds:
            rate.add_metric([*labels[run.provider_id], run.kind], run.calls / run.duration_seconds)
        if run.finished_at:
            last_ok.add_metric([*labels[run.provider_id], run.kind], run.finished_at.timestamp())
    yield rate
    yield last_ok
