"""Signals the devices app sends to higher layers, which it must never import."""
from django.dispatch import Signal

# Sent inside the merge transaction of a successful device sync, with sender=SyncRun and
# keyword arguments sync_run (the SyncRun, already marked succeeded) and provider. A receiver
# that writes rows (the sessions outbox) commits or rolls back together with the merge; a
# receiver that raises fails the sync and leaves Device as it was.
device_sync_completed = Signal()

# Sent inside the transaction that starts a device or usage sync (the carrier account's row is
# locked), with sender=SyncRun and keyword argument provider, before any call to the carrier. A
# receiver returns None, or why this account must not be synced now (a sentence for SyncRun.error):
# then the sync is recorded as failed with that reason and nothing is read or changed.
device_sync_starting = Signal()

# Sent after the transaction of a successful final usage sync commits, with sender=SyncRun and keyword arguments
# sync_run, provider and period (the ended BillingPeriod whose DeviceUsage rows gained final usage).
final_usage_synced = Signal()
