"""django-q2's ORM broker, with the clusters' status kept in the database instead of the process's cache.

django-q2 keeps cluster status (Stat: which clusters are up, their workers) in Django's cache, and the
default cache is per process, so no other process could tell whether any cluster is alive. Here it goes to
a table, written at most every HEARTBEAT_WRITE_SECONDS per cluster (the cluster reports every half second).
"""
from __future__ import annotations

import datetime as dt
import time

from django.utils import timezone
from django_q.brokers.orm import ORM
from django_q.conf import Conf

HEARTBEAT_WRITE_SECONDS = 5.0
# A status older than this is a cluster that is gone (killed, machine down): a few missed writes.
HEARTBEAT_TTL_SECONDS = 3 * HEARTBEAT_WRITE_SECONDS


def _status(value: str) -> str | None:
    from django_q.signing import BadSignature, SignedPackage

    try:
        return str(SignedPackage.loads(value).status)
    except (BadSignature, AttributeError):
        return None


class OrmBroker(ORM):
    # key -> (when written, status written): in the cluster's guard process, which reports every half second.
    _written: dict[str, tuple[float, str | None]] = {}

    def set_stat(self, key: str, value: str, timeout: int):
        from carrieropt.models import ClusterStatus

        now, status = time.monotonic(), _status(value)
        last, last_status = self._written.get(key, (None, None))
        # Starting and stopping are written at once; idle <-> working (every task) only every few seconds.
        lifecycle = status != last_status and not {status, last_status} <= {str(Conf.IDLE), str(Conf.WORKING)}
        if last is not None and not lifecycle and now - last < HEARTBEAT_WRITE_SECONDS:
            return
        self._written[key] = (now, status)
        expires = timezone.now() + dt.timedelta(seconds=max(timeout, HEARTBEAT_TTL_SECONDS))
        ClusterStatus.objects.update_or_create(key=key, defaults={"value": value, "expires_at": expires})

    def get_stat(self, key: str):
        from carrieropt.models import ClusterStatus

        return ClusterStatus.objects.filter(key=key, expires_at__gt=timezone.now()).values_list("value", flat=True).first()

    def get_stats(self, pattern: str) -> list:
        from carrieropt.models import ClusterStatus

        now = timezone.now()
        ClusterStatus.objects.filter(expires_at__lt=now - dt.timedelta(days=1)).delete()  # clusters long gone
        return list(ClusterStatus.objects.filter(expires_at__gt=now).order_by("key").values_list("value", flat=True))
