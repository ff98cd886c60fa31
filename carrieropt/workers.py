"""Is a django-q2 worker cluster alive? Read from the clusters' own status (django_q's Stat), on any broker.

With the ORM broker the status lives in the database (carrieropt.broker.OrmBroker), so a web process or a
command sees the clusters of every machine; with Redis it lives in Redis, where django-q2 keeps it anyway.
"""
from __future__ import annotations

NO_CLUSTER = ("no worker cluster is running: start `make worker` (`manage.py qcluster`); the session waits, "
              "queued, until one does")


def clusters_alive() -> int:
    """Clusters whose status was reported recently and that are not stopping; tasks run inline count as one."""
    from django_q.conf import Conf
    from django_q.status import Stat

    if Conf.SYNC:
        return 1

    return sum(1 for stat in Stat.get_all() if stat.status not in (Conf.STOPPING, Conf.STOPPED))
