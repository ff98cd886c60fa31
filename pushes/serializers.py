"""The push as the API shows it: its Go/No-Go decision and live counts."""
from __future__ import annotations

from rest_framework import serializers

from pushes.counts import push_counts, push_rate_live
from pushes.models import RatePlanPush


class PushOut(serializers.ModelSerializer):
    """A push with its Go/No-Go decision and live counts (counted from its change rows on every read)."""

    provider_name = serializers.CharField(source="provider.name")
    session = serializers.UUIDField(source="session.guid", allow_null=True, help_text="The session applied, if any.")
    applied = serializers.SerializerMethodField()
    rejected = serializers.SerializerMethodField(help_text="Refused by the carrier; `error` of the change says why.")
    discrepancies = serializers.SerializerMethodField(
        help_text="Skipped: the carrier's plan was no longer the one the optimization saw.")
    failed = serializers.SerializerMethodField()
    not_sent = serializers.SerializerMethodField(
        help_text="Not sent: the billing period would have ended before they were sent and verified.")
    remaining = serializers.SerializerMethodField(help_text="Changes not yet settled.")
    verified = serializers.SerializerMethodField(help_text="Applied changes the carrier showed on the read-back.")
    verify_mismatches = serializers.SerializerMethodField(
        help_text="Applied changes the carrier did not show on two read-backs.")
    rate_per_minute_measured = serializers.SerializerMethodField(
        help_text="SIMs per minute: so far while running, as measured once finished.")

    class Meta:
        model = RatePlanPush
        fields = ["id", "provider", "provider_name", "session", "trigger", "applied_by", "status", "decision", "decision_reason",
                  "period_ends_at", "minutes_left", "minutes_needed", "expected", "rate_per_minute", "rate_source", "batch_size",
                  "total", "applied", "rejected", "discrepancies", "failed", "not_sent", "remaining", "verified",
                  "verify_mismatches", "rate_per_minute_measured", "created_at", "started_at", "finished_at", "error", "stopped_early"]
        read_only_fields = fields

    def _counts(self, obj):
        # A list sets _live_counts for a whole page in one query (SessionPushesApi); one push counts its own.
        if getattr(obj, "_live_counts", None) is None:
            obj._live_counts = push_counts(push_id=obj.pk)
        return obj._live_counts

    def get_applied(self, obj) -> int:
        return self._counts(obj).applied

    def get_rejected(self, obj) -> int:
        return self._counts(obj).rejected

    def get_discrepancies(self, obj) -> int:
        return self._counts(obj).discrepancy

    def get_failed(self, obj) -> int:
        return self._counts(obj).failed

    def get_not_sent(self, obj) -> int:
        return self._counts(obj).not_sent

    def get_remaining(self, obj) -> int:
        return self._counts(obj).remaining

    def get_verified(self, obj) -> int:
        return self._counts(obj).verified

    def get_verify_mismatches(self, obj) -> int:
        return self._counts(obj).verify_mismatches

    def get_rate_per_minute_measured(self, obj) -> float | None:
        return push_rate_live(push=obj, processed=self._counts(obj).processed)
