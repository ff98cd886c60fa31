"""Receivers for signals of lower layers that must not import sessions."""
from django.dispatch import receiver

from devices.signals import device_sync_completed
from sessions.events import sync_notification_record


@receiver(device_sync_completed, dispatch_uid="sessions.sync_notification")
def sync_notification_on_device_sync(sender, *, sync_run, provider, **kwargs):
    # Runs inside the merge transaction: the notice exists exactly when the merge does.
    sync_notification_record(provider=provider)
