"""The Prometheus endpoint: one collector that reads every app's figures from the database at scrape time.

Values come from the database, not from in-process counters, so any number of web and worker
processes on any number of machines give one consistent answer without a multiprocess directory."""
from __future__ import annotations

import hmac

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.registry import Collector

from devices import metrics as device_metrics
from pushes import metrics as push_metrics
from sessions import metrics as session_metrics


class DatabaseCollector(Collector):
    def collect(self):
        labels = device_metrics.provider_labels()
        yield from session_metrics.collect(labels)
        yield from device_metrics.collect(labels)
        yield from push_metrics.collect(labels)


# A registry of its own: the default one's process metrics would describe only the web process that answered.
registry = CollectorRegistry(auto_describe=False)
registry.register(DatabaseCollector())


def metrics(request: HttpRequest) -> HttpResponse:
    token = settings.METRICS_TOKEN
    if not token:
        raise Http404("metrics are off: METRICS_TOKEN is not set")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        response = HttpResponse("401 Unauthorized: send Authorization: Bearer <METRICS_TOKEN>\n", status=401,
                                content_type="text/plain; charset=utf-8")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
