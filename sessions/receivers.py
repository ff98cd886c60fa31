"""Receivers for signals of lower layers that must not import sessions."""
from django.dispatch import receiver

from devices.signals import device_sync_completed, device_sync_starting
from sessions.events import sync_notification_record
from sessions.models import ACTIVE_STATUSES, OptimizationSession


@receiver(device_sync_completed, dispatch_uid="sessions.sync_notification")
def sync_notification_on_device_sync(sender, *, sync_run, provider, **kwargs):
    # Runs inside the merge transaction: the notice exists exactly when the merge does.
    sync_notification_record(provider=provider)


@receiver(device_sync_starting, dispatch_uid="sessions.no_background_sync_during_session")
def refuse_background_sync_during_session(sender, *, provider, background=False, **kwargs) -> str | None:
    # A session syncs the account itself (topping up what the background sync left); the two would share the
    # carrier's rate limit from two processes.
    if not background:
        return None
    active = OptimizationSession.objects.filter(provider=provider, status__in=ACTIVE_STATUSES).order_by("pk").first()
    if active is None:
        return None
    return f"session {active.pk} of this account is running and syncs it itself; nothing was read or changed"
