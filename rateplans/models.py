"""The carrier's catalogue: carrier accounts, billing periods, rate plans, communication plans."""
from __future__ import annotations

import datetime as dt
import ipaddress
import zoneinfo
from decimal import Decimal
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q

from carrieropt.fields import EncryptedTextField, SecretFieldsMixin, sealed_value
from carrieropt.options import ChargeType, Method, Pooling

MONEY = {"max_digits": 12, "decimal_places": 4}
MEGABYTES = {"max_digits": 16, "decimal_places": 3}


def validate_timezone(value: str) -> None:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValidationError(f"{value!r} is not an IANA time zone (e.g. America/Chicago)") from None


def validate_carrier_url(value: str) -> None:
    """The API key travels in every request: plain http only to this machine (the simulator)."""
    parts = urlsplit(value)
    host = parts.hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if parts.scheme != "https" and not loopback:
        raise ValidationError(f"{value!r}: use https; the API key would be sent in clear text")


# Where the stored key is sent: changing any of these needs the key entered again,
# so a write access to the account can never redirect its key to another host.
CREDENTIAL_TARGET_FIELDS = ("api_base_url", "username", "integration")


class Integration(models.TextChoices):
    JASPER = "Jasper", "Jasper"
    POD19 = "POD19", "POD19"
    TMOBILE_JASPER = "TMobileJasper", "T-Mobile Jasper"
    ROGERS = "Rogers", "Rogers"
    TELEGENCE = "Telegence", "Telegence"
    THINGSPACE = "ThingSpace", "ThingSpace"


JASPER_FAMILY = frozenset({Integration.JASPER, Integration.POD19, Integration.TMOBILE_JASPER, Integration.ROGERS})
NOT_SYNCABLE_INTEGRATIONS = frozenset({Integration.TELEGENCE, Integration.THINGSPACE})
# What an account may be given (the API's input enum): the integrations carrieropt can sync.
SYNCABLE_INTEGRATION_CHOICES = [(value, label) for value, label in Integration.choices if value in JASPER_FAMILY]


def validate_syncable_integration(value: str) -> None:
    """Only integrations carrieropt can sync may be chosen: for the others no SIM or usage would ever arrive,
    so an account of theirs could never be optimized. (Stored accounts of them stay readable.)"""
    if value in NOT_SYNCABLE_INTEGRATIONS:
        raise ValidationError(
            f"{value} accounts cannot be synced by carrieropt yet, so optimization is not available for them; "
            f"choose one of the Jasper family (Jasper, POD19, TMobileJasper, Rogers).")


class PortalType(models.TextChoices):
    M2M = "M2M", "M2M"
    MOBILITY = "Mobility", "Mobility"


class ServiceProvider(SecretFieldsMixin, models.Model):
    """One carrier account of a tenant (legacy: service provider)."""

    tenant = models.ForeignKey("carrieropt.Tenant", on_delete=models.CASCADE, related_name="providers")
    name = models.CharField(max_length=200)
    integration = models.CharField(max_length=20, choices=Integration.choices, default=Integration.JASPER,
                                   validators=[validate_syncable_integration])
    portal_type = models.CharField(max_length=10, choices=PortalType.choices, default=PortalType.M2M)
    api_base_url = models.URLField(max_length=300, validators=[validate_carrier_url],
                                   help_text="e.g. https://rws.example.com (the /rws/api/v1 prefix is added)")
    username = models.CharField(max_length=200)
    # Write-only: never rendered by admin or API, never logged; encrypted at rest (FIELD_ENCRYPTION_KEYS).
    api_key = EncryptedTextField(max_length=300)
    billing_timezone = models.CharField(max_length=64, default="UTC", validators=[validate_timezone])
    currency = models.CharField(
        max_length=3, default="USD",
        validators=[RegexValidator(r"^[A-Z]{3}$", "Use the ISO 4217 code of the currency: three capital letters, "
                                                    "e.g. USD or EUR.")],
        help_text="ISO 4217 code of the currency the carrier bills this account in (its rate plans' prices): "
                  "every amount of the account is shown with it.")
    billing_cycle_end_day = models.PositiveSmallIntegerField(
        default=31, validators=[MinValueValidator(1), MaxValueValidator(31)],
        help_text="Day of month the billing cycle ends (31 = last day of the month).",
    )
    optimization_start_hour = models.PositiveSmallIntegerField(default=0, validators=[MaxValueValidator(23)])
    prorates = models.BooleanField(
        null=True, blank=True,
        help_text="The carrier bills a SIM active part of a cycle for those days only (recurring charge and "
                  "allowance scale, fees do not). Empty: the integration's default (Jasper family: yes).")
    pooling = models.CharField(
        max_length=10, choices=Pooling.choices, default=Pooling.GROUP,
        help_text="How the carrier bills this account's pooled plans: SIMs on one pooled plan share one allowance "
                  "per communication-plan group (the legacy rule), per customer (SIMs without a customer pool per "
                  "group), or across the whole account. Pools that span groups are solved and bounded together.")
    auto_apply = models.BooleanField(default=False, help_text="Push recommended plans to the carrier after each session.")
    # What a session of this account runs with unless its start says otherwise (scheduled sessions always do).
    default_method = models.CharField(max_length=20, choices=Method.choices, default=Method.CERTIFIED,
                                      help_text="Optimization method of sessions that do not choose one.")
    default_charge_type = models.CharField(max_length=10, choices=ChargeType.choices, default=ChargeType.BOTH,
                                           help_text="What sessions that do not choose count: both, rate or overage.")
    default_must_beat_current = models.BooleanField(
        default=False, help_text="Sessions that do not choose keep a group on its current plans unless the answer "
                                 "is cheaper (legacy SkipLowerCostCheck off).")
    default_max_changes = models.PositiveIntegerField(
        null=True, blank=True, help_text="Change budget of sessions that do not choose one (scheduled sessions): "
                                         "at most this many SIMs change plan when applied. Empty: no budget.")
    active = models.BooleanField(default=True)
    report_recipients = models.TextField(blank=True, help_text="Comma-separated e-mail addresses for reports and alerts.")
    rate_limit_per_second = models.DecimalField(max_digits=6, decimal_places=2, default=Decimal("5"), validators=[MinValueValidator(Decimal("0.01"))])
    max_concurrency = models.PositiveSmallIntegerField(
        default=1, validators=[MinValueValidator(1)],
        help_text="Calls in flight at once. Cisco's API policy is one per account; raise it only if the carrier "
                  "granted this account more.")
    max_pages = models.PositiveIntegerField(default=100_000, validators=[MinValueValidator(1)])
    last_device_sync_at = models.DateTimeField(null=True, blank=True)
    last_usage_sync_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["tenant", "name"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="provider_unique_name_per_tenant"),
            models.CheckConstraint(condition=Q(billing_cycle_end_day__gte=1, billing_cycle_end_day__lte=31), name="provider_cycle_end_day_1_31"),
            models.CheckConstraint(condition=Q(optimization_start_hour__lte=23), name="provider_start_hour_0_23"),
            models.CheckConstraint(condition=Q(rate_limit_per_second__gt=0), name="provider_rate_limit_positive"),
        ]

    def __str__(self):
        return f"{self.name} ({self.integration})"

    @property
    def has_api_key(self) -> bool:
        """Whether a key is stored, without decrypting it."""
        return bool(sealed_value(self, "api_key"))

    @property
    def is_jasper_family(self) -> bool:
        return self.integration in JASPER_FAMILY

    @property
    def bills_prorated(self) -> bool:
        """Whether SIMs active part of a cycle are billed pro rata: the account's setting, else its integration's."""
        return self.is_jasper_family if self.prorates is None else self.prorates

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.billing_timezone)

    @property
    def recipients(self) -> list[str]:
        return [e.strip() for e in self.report_recipients.split(",") if e.strip()]

    @property
    def alert_recipients(self) -> list[str]:
        """Who gets this account's reports and alerts: its recipients, then operations (OPS_EMAILS), once each."""
        return list(dict.fromkeys([*self.recipients, *settings.OPS_EMAILS]))


class BillingPeriod(models.Model):
    """A billing cycle of one account, dates inclusive, in the account's billing time zone."""

    provider = models.ForeignKey(ServiceProvider, on_delete=models.CASCADE, related_name="billing_periods")
    start_date = models.DateField()
    end_date = models.DateField()

    class Meta:
        ordering = ["provider", "-end_date"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "end_date"], name="billing_period_unique_end"),
            models.CheckConstraint(condition=Q(end_date__gte=models.F("start_date")), name="billing_period_end_after_start"),
        ]

    def __str__(self):
        return f"{self.start_date} – {self.end_date}"

    @property
    def days_in_cycle(self) -> int:
        return (self.end_date - self.start_date).days + 1

    def starts_at(self) -> dt.datetime:
        return dt.datetime.combine(self.start_date, dt.time.min, tzinfo=self.provider.tz)

    def ends_at(self) -> dt.datetime:
        """The instant the period is over (midnight after the end date, local time)."""
        return dt.datetime.combine(self.end_date + dt.timedelta(days=1), dt.time.min, tzinfo=self.provider.tz)

    def days_remaining(self, now: dt.datetime) -> int:
        local = now.astimezone(self.provider.tz).date()
        return max(0, min(self.days_in_cycle, (self.end_date - local).days + 1))


class PlanType(models.TextChoices):
    DATA = "data", "Data"
    VOICE_DATA = "voice_data", "Voice and data"
    SMS = "sms", "SMS"


class RatePlan(models.Model):
    provider = models.ForeignKey(ServiceProvider, on_delete=models.CASCADE, related_name="rate_plans")
    code = models.CharField(max_length=120, help_text="The rate plan name as the carrier reports it (ratePlan).")
    name = models.CharField(max_length=200, blank=True)
    monthly_cost = models.DecimalField(**MONEY, validators=[MinValueValidator(Decimal(0))])
    included_mb = models.DecimalField(**MEGABYTES, validators=[MinValueValidator(Decimal(0))])
    overage_rate = models.DecimalField(**MONEY, validators=[MinValueValidator(Decimal(0))], help_text="Price of one overage block.")
    overage_block_mb = models.DecimalField(**MEGABYTES, default=Decimal("1"), validators=[MinValueValidator(Decimal(0))], help_text="Data per overage charge, MB.")
    fee_per_sim = models.DecimalField(**MONEY, default=Decimal(0), validators=[MinValueValidator(Decimal(0))])
    pooled = models.BooleanField(default=False)
    plan_type = models.CharField(max_length=20, choices=PlanType.choices, default=PlanType.DATA)
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["provider", "included_mb", "code"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "code"], name="rate_plan_unique_code"),
            models.CheckConstraint(condition=Q(monthly_cost__gte=0), name="rate_plan_monthly_cost_nonnegative"),
            models.CheckConstraint(condition=Q(included_mb__gte=0), name="rate_plan_included_mb_nonnegative"),
            models.CheckConstraint(condition=Q(overage_rate__gte=0), name="rate_plan_overage_rate_nonnegative"),
            models.CheckConstraint(condition=Q(overage_block_mb__gte=0), name="rate_plan_overage_block_nonnegative"),
            models.CheckConstraint(condition=Q(fee_per_sim__gte=0), name="rate_plan_fee_nonnegative"),
        ]

    def __str__(self):
        return self.code

    @property
    def catalogue_problems(self) -> list[str]:
        """Why the optimizer cannot price this plan (legacy rule: block and rate must be > 0)."""
        problems = []
        if self.overage_block_mb <= 0:
            problems.append("overage_block_mb must be > 0")
        if self.overage_rate <= 0:
            problems.append("overage_rate must be > 0")
        return problems


class CommunicationPlan(models.Model):
    provider = models.ForeignKey(ServiceProvider, on_delete=models.CASCADE, related_name="communication_plans")
    name = models.CharField(max_length=200)
    rate_plans = models.ManyToManyField(RatePlan, related_name="communication_plans", blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["provider", "name"]
        constraints = [models.UniqueConstraint(fields=["provider", "name"], name="communication_plan_unique_name")]

    def __str__(self):
        return self.name


class AlertKind(models.TextChoices):
    SESSION_FAILED = "session_failed", "Session failed"
    ALREADY_RUNNING = "already_running", "Start refused: a session is already running"
    CARRIER_AUTH = "carrier_auth", "Carrier refused the credentials or permissions"
    BREAKER_OPEN = "breaker_open", "Circuit breaker opened"
    PUSH_ATTENTION = "push_attention", "Push stopped or ended with rejections"
    WEBHOOK_DEAD = "webhook_dead_letter", "Webhook event dead-lettered"
    WATCHDOG = "watchdog", "Watchdog action"


class Alert(models.Model):
    """One incident of a carrier account, e-mailed once: a repeat with the same key inside
    ALERT_DEDUP_MINUTES of the last one is counted here, not mailed again."""

    provider = models.ForeignKey(ServiceProvider, on_delete=models.CASCADE, related_name="alerts")
    kind = models.CharField(max_length=30, choices=AlertKind.choices)
    key = models.CharField(max_length=200, help_text="Incident key: repeats with this key in the window are one incident.")
    subject = models.CharField(max_length=300)
    body = models.TextField()
    recipients = models.TextField(blank=True, help_text="Who it was mailed to (comma-separated).")
    occurrences = models.PositiveIntegerField(default=1, help_text="Times the incident was raised; mailed once.")
    first_at = models.DateTimeField()
    last_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)
    send_error = models.TextField(blank=True)

    class Meta:
        ordering = ["-first_at"]
        indexes = [models.Index(fields=["key", "-last_at"], name="alert_key_last")]

    def __str__(self):
        return f"{self.get_kind_display()}: {self.subject}"
