"""Signals the sessions app sends to higher layers, which it must never import."""
from django.dispatch import Signal

# Sent inside the transaction that completes a session (stage complete, status succeeded), with
# sender=OptimizationSession and keyword argument session (the completed session). A receiver that
# queues work with transaction.on_commit (the automatic rate-plan push) queues it exactly when the
# completion commits; a receiver that raises rolls the completion back.
session_completed = Signal()
