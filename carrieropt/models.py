"""Tenants: the companies whose SIM fleets carrieropt optimizes."""
from django.conf import settings
from django.db import models


class Tenant(models.Model):
    name = models.CharField(max_length=200, unique=True)
    slug = models.SlugField(max_length=100, unique=True)
    users = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="tenants", blank=True)
    cross_provider = models.BooleanField(
        null=True, blank=True,
        help_text="Cross-provider optimizations of a customer on several of the tenant's carrier accounts "
                  "(legacy ENABLE_CROSS_PROVIDER). Empty: the ENABLE_CROSS_PROVIDER setting.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    @property
    def cross_provider_enabled(self) -> bool:
        return settings.ENABLE_CROSS_PROVIDER if self.cross_provider is None else self.cross_provider


class ClusterStatus(models.Model):
    """A django-q2 cluster's last reported status (carrieropt.broker.OrmBroker): who is alive to run tasks."""

    key = models.CharField(max_length=200, unique=True)
    value = models.TextField(help_text="django-q2's signed Stat of the cluster.")
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self):
        return self.key
