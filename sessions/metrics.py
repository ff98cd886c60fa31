"""Prometheus metrics of sessions and the webhook outbox, read from the database at scrape time."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator

from django.conf import settings
from django.db.models import Count, Max, Min
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric

from devices.metrics import PROVIDER_LABELS
from sessions.models import ACTIVE_STATUSES, OptimizationSession, ProgressEvent, Scope, SessionStatus

# Seconds: a stage takes from well under a second (grouping a small account) to hours (a large sync).
DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600)


def histogram_buckets(values: Iterable[float]) -> tuple[list[tuple[str, float]], float]:
    """Cumulative (le, count) buckets ending in +Inf, and the sum, of `values`."""
    values = sorted(values)
    buckets, i = [], 0
    for bound in DURATION_BUCKETS:
        while i < len(values) and values[i] <= bound:
            i += 1
        buckets.append((str(float(bound)), i))
    buckets.append(("+Inf", len(values)))
    return buckets, float(sum(values))


def collect(labels: dict[int, list[str]]) -> Iterator[Metric]:
    now = timezone.now()
    sessions = GaugeMetricFamily("carrieropt_sessions", "Optimization sessions by status and trigger.",
                                 labels=["status", "trigger"])
    counted = {(row["status"], row["trigger"]): row["n"] for row in
               OptimizationSession.objects.order_by().values("status", "trigger").annotate(n=Count("pk"))}
    for (status, trigger), n in sorted(counted.items()):
        sessions.add_metric([status, trigger], n)
    yield sessions

    # Finished stages of every session, from the timings stored with it.
    stage_seconds: dict[str, list[float]] = defaultdict(list)
    for timings in OptimizationSession.objects.exclude(stage_timings={}).values_list("stage_timings", flat=True):
        for stage, timing in (timings or {}).items():
            if isinstance(timing, dict) and isinstance(timing.get("seconds"), int | float):
                stage_seconds[stage].append(float(timing["seconds"]))
    stages = HistogramMetricFamily("carrieropt_session_stage_duration_seconds",
                                   "Time each finished stage of a session took.", labels=["stage"])
    for stage in sorted(stage_seconds):
        stages.add_metric([stage], *histogram_buckets(stage_seconds[stage]))
    yield stages

    durations: dict[str, list[float]] = defaultdict(list)
    for status, started, finished in (OptimizationSession.objects.exclude(status__in=ACTIVE_STATUSES)
                                      .filter(started_at__isnull=False, finished_at__isnull=False)
                                      .values_list("status", "started_at", "finished_at")):
        durations[status].append(max(0.0, (finished - started).total_seconds()))
    whole = HistogramMetricFamily("carrieropt_session_duration_seconds",
                                  "Start to end of finished sessions, by how they ended.", labels=["status"])
    for status in sorted(durations):
        whole.add_metric([status], *histogram_buckets(durations[status]))
    yield whole

    yield from _last_sessions(labels)
    yield from _active_sessions(labels, now=now)
    yield from _webhooks(now=now)


def _last_sessions(labels: dict[int, list[str]]) -> Iterator[Metric]:
    """Figures of each account's last succeeded carrier session (the answer operators act on; a customer's session
    covers part of the account only)."""
    names = {
        "devices": ("carrieropt_last_session_devices", "SIMs optimized by the account's last succeeded session."),
        "current": ("carrieropt_last_session_current_cost", "Cost of the SIMs on their current plans."),
        "optimized": ("carrieropt_last_session_optimized_cost", "Cost on the recommended plans."),
        "savings": ("carrieropt_last_session_savings", "Current cost minus optimized cost."),
        "finished": ("carrieropt_last_session_finished_timestamp_seconds", "When it finished (Unix time)."),
    }
    families = {key: GaugeMetricFamily(name, doc, labels=[*PROVIDER_LABELS, "session"])
                for key, (name, doc) in names.items()}
    latest = (OptimizationSession.objects.filter(status=SessionStatus.SUCCEEDED, scope=Scope.CARRIER).order_by()
              .values("provider_id")
              .annotate(last=Max("finished_at")))
    seen = set()
    for provider_id, last in ((row["provider_id"], row["last"]) for row in latest):
        session = (OptimizationSession.objects.filter(provider_id=provider_id, status=SessionStatus.SUCCEEDED,
                                                      scope=Scope.CARRIER, finished_at=last).order_by("-pk").first())
        if session is None or provider_id in seen:
            continue
        seen.add(provider_id)
        row = [*labels[provider_id], str(session.guid)]
        families["devices"].add_metric(row, session.device_count)
        if session.current_cost is not None:
            families["current"].add_metric(row, float(session.current_cost))
        if session.optimized_cost is not None:
            families["optimized"].add_metric(row, float(session.optimized_cost))
        if session.savings is not None:
            families["savings"].add_metric(row, float(session.savings))
        if session.finished_at:
            families["finished"].add_metric(row, session.finished_at.timestamp())
    yield from families.values()


def _active_sessions(labels: dict[int, list[str]], *, now) -> Iterator[Metric]:
    age = GaugeMetricFamily("carrieropt_active_session_age_seconds",
                            "Seconds since the account's pending or running session was created.",
                            labels=[*PROVIDER_LABELS, "stage"])
    heartbeat = GaugeMetricFamily("carrieropt_active_session_heartbeat_age_seconds",
                                  "Seconds since the worker holding the session's long stage last proved alive.",
                                  labels=[*PROVIDER_LABELS, "stage"])
    for session in OptimizationSession.objects.filter(status__in=ACTIVE_STATUSES).order_by("provider_id"):
        row = [*labels[session.provider_id], session.stage]
        age.add_metric(row, (now - session.created_at).total_seconds())
        if session.stage_heartbeat_at:
            heartbeat.add_metric(row, (now - session.stage_heartbeat_at).total_seconds())
    yield age
    yield heartbeat


def _webhooks(*, now) -> Iterator[Metric]:
    """Only with a webhook configured: without one nothing is ever delivered, and a backlog means nothing."""
    if not settings.AMOP_WEBHOOK_URL:
        return
    # A dead-lettered event is skipped (later events flow): it is not waiting, it is counted on its own.
    waiting = ProgressEvent.objects.filter(delivered_at__isnull=True, dead_lettered_at__isnull=True)
    undelivered = waiting.aggregate(n=Count("pk"), oldest=Min("created_at"), attempts=Max("attempts"))
    yield GaugeMetricFamily("carrieropt_webhook_backlog", "Progress events not delivered to AMOP yet.",
                            value=undelivered["n"])
    yield GaugeMetricFamily(
        "carrieropt_webhook_dead_lettered", "Progress events given up on after AMOP_WEBHOOK_MAX_ATTEMPTS "
        "(re-send them from the admin).",
        value=ProgressEvent.objects.filter(delivered_at__isnull=True, dead_lettered_at__isnull=False).count())
    oldest = (now - undelivered["oldest"]).total_seconds() if undelivered["oldest"] else 0.0
    yield GaugeMetricFamily("carrieropt_webhook_oldest_undelivered_age_seconds",
                            "Age of the oldest undelivered event (0 when none is waiting).", value=oldest)
    yield GaugeMetricFamily("carrieropt_webhook_max_attempts",
                            "Most delivery attempts of any undelivered event (a receiver refusing one event).",
                            value=undelivered["attempts"] or 0)
