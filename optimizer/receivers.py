"""Reactions to lower layers' signals: realized savings once a cycle's final usage is in."""
from django.dispatch import receiver

from devices.signals import final_usage_synced
from optimizer.realized import realized_compute_period


@receiver(final_usage_synced, dispatch_uid="optimizer.realized_after_final_usage")
def _realized_after_final_usage(sender, *, sync_run, provider, period, **kwargs):
    realized_compute_period(provider_id=provider.pk, period_id=period.pk)
