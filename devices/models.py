"""The SIMs: devices as the carrier reports them, their usage, the staging table and sync runs."""
from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q

iccid_validator = RegexValidator(r"^\d{19,20}$", "An ICCID is 19 or 20 digits.")


class DeviceStatus(models.TextChoices):
    ACTIVATED = "ACTIVATED", "Activated"
    ACTIVATION_READY = "ACTIVATION_READY", "Activation ready"
    DEACTIVATED = "DEACTIVATED", "Deactivated"
    INVENTORY = "INVENTORY", "Inventory"
    RETIRED = "RETIRED", "Retired"
    TEST_READY = "TEST_READY", "Test ready"
    PURGED = "PURGED", "Purged"
    REPLACED = "REPLACED", "Replaced"


class Customer(models.Model):
    """One of the tenant's customers: the carrier's `customer` of its SIMs ("an enterprise or business unit"),
    on any of the tenant's carrier accounts, and the ids AMOP 2.0 knows it by (CustomerId, SiteId)."""

    tenant = models.ForeignKey("carrieropt.Tenant", on_delete=models.CASCADE, related_name="customers")
    name = models.CharField(max_length=200, help_text="The customer's name as the carrier reports it on each SIM.")
    amop_customer_id = models.CharField(
        "AMOP CustomerId", max_length=64, blank=True, default="",
        help_text="AMOP 2.0's CustomerId of this customer (carried by AMOP's messages); empty until mapped.")
    amop_site_id = models.CharField(
        "AMOP SiteId", max_length=64, blank=True, default="",
        help_text="AMOP 2.0's SiteId of this customer; empty until mapped.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["tenant", "name"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="customer_unique_name_per_tenant"),
            models.UniqueConstraint(fields=["tenant", "amop_customer_id"], condition=~Q(amop_customer_id=""),
                                    name="customer_unique_amop_customer_id", violation_error_code="unique",
                                    violation_error_message="Another customer of the tenant has this AMOP CustomerId."),
            models.UniqueConstraint(fields=["tenant", "amop_site_id"], condition=~Q(amop_site_id=""),
                                    name="customer_unique_amop_site_id", violation_error_code="unique",
                                    violation_error_message="Another customer of the tenant has this AMOP SiteId."),
            models.CheckConstraint(condition=~Q(name=""), name="customer_name_required"),
        ]

    def __str__(self):
        return self.name


class Device(models.Model):
    """One SIM of a carrier account, as of the last merge from staging."""

    provider = models.ForeignKey("rateplans.ServiceProvider", on_delete=models.CASCADE, related_name="devices")
    iccid = models.CharField("ICCID", max_length=20, validators=[iccid_validator])
    status = models.CharField(max_length=20, choices=DeviceStatus.choices, default=DeviceStatus.ACTIVATED)
    rate_plan = models.ForeignKey("rateplans.RatePlan", null=True, blank=True, on_delete=models.SET_NULL, related_name="devices")
    communication_plan = models.ForeignKey("rateplans.CommunicationPlan", null=True, blank=True, on_delete=models.SET_NULL, related_name="devices")
    # The carrier's own names, kept even when no catalogue row matches them.
    rate_plan_code = models.CharField(max_length=120, blank=True)
    communication_plan_name = models.CharField(max_length=200, blank=True)
    msisdn = models.CharField("MSISDN", max_length=20, blank=True)
    customer = models.ForeignKey(Customer, null=True, blank=True, on_delete=models.SET_NULL, related_name="devices")
    # The carrier's customer name as Get Device Details last said it ("" for none); NULL while it is to be read
    # (a new SIM, or one changed since): the device list does not carry it. `customer` keeps the last one known.
    customer_name = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001 - NULL and "" differ
    sim_notes = models.TextField(blank=True)
    date_activated = models.DateTimeField(null=True, blank=True)
    date_added = models.DateTimeField(null=True, blank=True)
    date_updated = models.DateTimeField(null=True, blank=True, help_text="dateUpdated from the carrier")
    missing_since = models.DateTimeField(null=True, blank=True, help_text="Set when a full sync no longer reports the SIM.")
    deactivated_at = models.DateTimeField(
        null=True, blank=True,
        help_text="When the SIM left ACTIVATED for DEACTIVATED or RETIRED (the carrier's dateUpdated of that change); "
                  "the carrier still bills the cycle it happened in.")
    synced_at = models.DateTimeField(null=True, blank=True)
    plan_changed_at = models.DateTimeField(
        null=True, blank=True,
        help_text="When a sync or a push last saw this SIM's rate plan change (never: not known to have changed).")

    class Meta:
        ordering = ["provider", "iccid"]
        constraints = [models.UniqueConstraint(fields=["provider", "iccid"], name="device_unique_iccid_per_provider")]
        indexes = [models.Index(fields=["provider", "communication_plan"], name="device_provider_commplan")]

    def __str__(self):
        return self.iccid


# Statuses of SIMs that stopped: billed for the cycle they stopped in (from deactivated_at), never moved.
STOPPED_STATUSES = (DeviceStatus.DEACTIVATED, DeviceStatus.RETIRED)


def billed_in_cycle(*, cycle_start) -> Q:
    """SIMs the carrier bills a rate plan for in the cycle starting at `cycle_start`: every ACTIVATED SIM,
    and those deactivated or retired during it."""
    return Q(status=DeviceStatus.ACTIVATED) | Q(status__in=STOPPED_STATUSES, deactivated_at__gte=cycle_start)


class DevicePin(models.Model):
    """An operator's decision that a SIM keeps its rate plan: no session moves it while the pin exists."""

    device = models.OneToOneField(Device, on_delete=models.CASCADE, related_name="pin")
    reason = models.TextField(help_text="Why the SIM must keep its plan (shown wherever the SIM is kept).")
    pinned_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                  related_name="+")
    pinned_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-pinned_at"]
        constraints = [models.CheckConstraint(condition=~Q(reason=""), name="pin_reason_required")]

    def __str__(self):
        return f"{self.device} pinned: {self.reason[:40]}"


class DeviceUsage(models.Model):
    """Cycle-to-date usage of one SIM in one billing period and its projection to the full cycle."""

    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="usages")
    billing_period = models.ForeignKey("rateplans.BillingPeriod", on_delete=models.CASCADE, related_name="usages")
    ctd_bytes = models.BigIntegerField(default=0)
    usage_mb = models.DecimalField(max_digits=16, decimal_places=3, default=0)
    projected_mb = models.DecimalField(max_digits=16, decimal_places=3, default=0)
    usage_date = models.DateTimeField(null=True, blank=True, help_text="When the carrier measured the cycle-to-date usage.")
    synced_at = models.DateTimeField(auto_now=True)
    # Once the cycle has ended: what the carrier billed for the whole cycle, and on which plan (devices.final_usage).
    # Empty until read; a SIM whose final usage the carrier did not report keeps them empty (never 0).
    final_bytes = models.BigIntegerField(null=True, blank=True, help_text="The whole cycle's data usage, in bytes.")
    final_mb = models.DecimalField(max_digits=16, decimal_places=3, null=True, blank=True,
                                   help_text="The whole cycle's data usage, in MB.")
    # db_default: the usage sync's raw upserts name only the columns they write.
    final_rate_plan_code = models.CharField(
        max_length=120, blank=True, default="", db_default="", help_text="The rate plan the carrier billed the cycle's usage on (its plan at the "
                                              "cycle's end).")
    final_synced_at = models.DateTimeField(null=True, blank=True, help_text="When the final usage was read.")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["device", "billing_period"], name="usage_unique_device_period"),
            models.CheckConstraint(condition=Q(ctd_bytes__gte=0), name="usage_bytes_nonnegative"),
            models.CheckConstraint(condition=Q(usage_mb__gte=0), name="usage_mb_nonnegative"),
            models.CheckConstraint(condition=Q(projected_mb__gte=0), name="usage_projected_nonnegative"),
            models.CheckConstraint(condition=Q(final_bytes__isnull=True) | Q(final_bytes__gte=0),
                                   name="usage_final_nonnegative"),
        ]

    def __str__(self):
        return f"{self.device_id} in {self.billing_period_id}: {self.projected_mb} MB"


class SyncKind(models.TextChoices):
    FULL = "full", "Full"
    INCREMENTAL = "incremental", "Incremental"
    USAGE = "usage", "Usage"
    FINAL_USAGE = "final_usage", "Final usage of an ended cycle"


class SyncStatus(models.TextChoices):
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class SyncRun(models.Model):
    """One device or usage sync of one carrier account, with what it saw and rejected."""

    provider = models.ForeignKey("rateplans.ServiceProvider", on_delete=models.CASCADE, related_name="sync_runs")
    kind = models.CharField(max_length=20, choices=SyncKind.choices)
    status = models.CharField(max_length=20, choices=SyncStatus.choices, default=SyncStatus.RUNNING)
    modified_since = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    pages = models.PositiveIntegerField(default=0)
    devices_seen = models.PositiveIntegerField(default=0)
    inserted = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    missing = models.PositiveIntegerField(default=0)
    rejected = models.PositiveIntegerField(default=0)
    retries = models.PositiveIntegerField(default=0)
    calls = models.PositiveIntegerField(default=0, help_text="HTTP calls to the carrier, retries included.")
    throttled = models.PositiveIntegerField(
        default=0, help_text="Calls the carrier answered 'Rate Limit Exceeded' (errorCode 40000029 or HTTP 429); retried.")
    calls_per_second = models.FloatField(
        null=True, blank=True, help_text="Carrier calls per second this run achieved (calls / time from first call to last answer).")
    duplicates = models.PositiveIntegerField(default=0, help_text="Repeated ICCIDs dropped (newest kept).")
    skipped = models.PositiveIntegerField(default=0, help_text="Usage sync: SIMs not asked about (status).")
    duration_seconds = models.FloatField(null=True, blank=True)
    merge_seconds = models.FloatField(null=True, blank=True)
    watermark = models.DateTimeField(
        null=True, blank=True, help_text="modifiedSince for the next incremental sync, set when this one succeeded.")
    new_communication_plans = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    rejects = models.JSONField(default=list, blank=True, help_text="[{iccid, page, reason}] for rows not merged")
    # A running sync proves it is alive: a run whose heartbeat is older than STAGE_STALL_SECONDS is taken
    # over by the next sync of the account (which resumes from its checkpoint) instead of blocking it for hours.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    background = models.BooleanField(
        default=False, help_text="Started by the daily background sync; a session's sync takes it over.")
    checkpoint_page = models.PositiveIntegerField(
        default=0, help_text="Device sync: the last page whose SIMs are committed to staging (resumed after it).")
    resumed_from = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="The sync that stopped part-way and whose committed work this one continued.")

    class Meta:
        ordering = ["-started_at"]
        indexes = [
            models.Index(fields=["provider", "kind", "-started_at"], name="syncrun_latest",
                         condition=Q(status="succeeded")),
        ]

    def __str__(self):
        return f"{self.kind} sync #{self.pk} ({self.status})"


class DeviceStaging(models.Model):
    """Rows of the sync in progress; merged into Device in one transaction at the end."""

    provider = models.ForeignKey("rateplans.ServiceProvider", on_delete=models.CASCADE, related_name="+")
    sync_run = models.ForeignKey(SyncRun, on_delete=models.CASCADE, related_name="staged")
    iccid = models.CharField("ICCID", max_length=20)
    status = models.CharField(max_length=20)
    rate_plan_code = models.CharField(max_length=120)
    communication_plan_name = models.CharField(max_length=200)
    msisdn = models.CharField(max_length=20, blank=True)
    date_activated = models.DateTimeField(null=True, blank=True)
    date_added = models.DateTimeField(null=True, blank=True)
    date_updated = models.DateTimeField(null=True, blank=True)
    customer = models.CharField(max_length=200, null=True, blank=True,  # noqa: DJ001 - NULL: not read, "": none
                                help_text="NULL: not read in this sync.")
    page = models.PositiveIntegerField(default=0)
    # Blank for rows to merge; otherwise why the row is not merged (the SIM still counts as seen).
    reject_reason = models.CharField(max_length=300, blank=True, default="")

    class Meta:
        verbose_name_plural = "device staging"
        constraints = [models.UniqueConstraint(fields=["provider", "iccid"], name="staging_unique_iccid_per_provider")]

    def __str__(self):
        return self.iccid


class CarrierCallCount(models.Model):
    """Calls to a carrier account's API by operation and outcome, summed over every process that made them.

    Each client adds its counts when it is closed (one UPDATE per endpoint and outcome), so the
    metrics endpoint reads one table however many workers called the carrier."""

    provider = models.ForeignKey("rateplans.ServiceProvider", on_delete=models.CASCADE, related_name="carrier_call_counts")
    endpoint = models.CharField(max_length=40, help_text="list_devices, get_device, get_ctd_usage or change_rate_plan")
    outcome = models.CharField(max_length=40, help_text="ok, throttled, timeout, connection_error or http_<status>")
    calls = models.PositiveBigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["provider", "endpoint", "outcome"]
        constraints = [models.UniqueConstraint(fields=["provider", "endpoint", "outcome"],
                                               name="carrier_calls_unique_outcome")]

    def __str__(self):
        return f"{self.endpoint} {self.outcome}: {self.calls}"
