"""Receivers for signals of lower layers (sessions, devices), which must never import the push."""
from django.dispatch import receiver

from devices.signals import device_sync_starting
from pushes.create import push_running
from pushes.recommendations import session_apply_after_complete
from sessions.signals import session_completed


@receiver(session_completed, dispatch_uid="pushes.auto_apply")
def auto_apply_on_session_completed(sender, *, session, **kwargs):
    # Runs inside the completing transaction: the push is queued exactly when the completion commits.
    session_apply_after_complete(session=session)


@receiver(device_sync_starting, dispatch_uid="pushes.no_sync_while_pushing")
def refuse_sync_while_pushing(sender, *, provider, **kwargs) -> str | None:
    # The carrier's rate limit is per account but our token bucket is per process: a sync
    # and a push of one account in two workers would together exceed it.
    pushing = push_running(provider=provider)
    if pushing is None:
        return None
    return (f"rate plan update #{pushing.pk} of this account is running and uses the carrier's rate limit; "
            f"sync again when it has finished. Nothing was read or changed")
