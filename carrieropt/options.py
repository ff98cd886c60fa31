"""What an optimization may be asked for: method, charge type, and whether it must beat the current plans.

Shared by the carrier account's defaults (rateplans), the optimizer's run and the session, so it lives below all three.
"""
from __future__ import annotations

from django.db import models


class Method(models.TextChoices):
    CERTIFIED = "certified", "Certified (optimal with lower bound)"
    LEGACY = "legacy", "Legacy strategies"


class ChargeType(models.TextChoices):
    """What the costs count (legacy: rate charge and overage, rate charge only, overage only)."""

    BOTH = "both", "Rate charge and overage"
    RATE = "rate", "Rate charge only"
    OVERAGE = "overage", "Overage only"


class Pooling(models.TextChoices):
    """How the carrier pools an account's shared (pooled) rate plans: which SIMs on one pooled plan share one
    allowance (cost-model.md, the pool column)."""

    GROUP = "group", "Per communication-plan group (legacy)"
    CUSTOMER = "customer", "Per customer"
    ACCOUNT = "account", "Account-wide"
