"""Signals the devices app sends to higher layers, which it must never import."""
from django.dispatch import Signal

# Sent inside the merge transaction of a successful device sync, with sender=SyncRun and
# keyword arguments sync_run (the SyncRun, already marked succeeded) and provider. A receiver
# that writes rows (the sessions outbox) commits or rolls back together with the merge; a
# receiver that raises fails the sync and leaves Device as it was.
device_sync_completed = Signal()
