"""Writes of operator pins: a pinned SIM keeps its rate plan in every session until it is unpinned."""
from __future__ import annotations

from django.db import IntegrityError, transaction

from carrieropt.errors import ApplicationError, Conflict
from devices.models import Device, DevicePin

# Django's own permissions of the pin model: a tenant member pins with the first, unpins with the second.
PIN_PERMISSION = "devices.add_devicepin"
UNPIN_PERMISSION = "devices.delete_devicepin"
PIN_REFUSED = ("Pinning or unpinning a SIM decides what every later session may do with it and needs the "
               "permissions 'Can add device pin' and 'Can delete device pin' (devices.add_devicepin, "
               "devices.delete_devicepin); ask an administrator. You can still see every SIM and its pin.")


def can_pin(user) -> bool:
    return bool(user and user.is_authenticated and user.has_perm(PIN_PERMISSION))


def can_unpin(user) -> bool:
    return bool(user and user.is_authenticated and user.has_perm(UNPIN_PERMISSION))


class PinRefused(ApplicationError):
    code = "pin_refused"


def pin_check(*, device: Device, reason: str) -> None:
    """Raise PinRefused (naming the SIM and the field) when `device` cannot be pinned with `reason`."""
    if not (reason or "").strip():
        raise PinRefused(f"SIM {device.iccid}: reason: say why the SIM must keep its plan.", field="reason")
    if device.rate_plan_id is None:
        raise PinRefused(f"SIM {device.iccid}: rate_plan: it has no current rate plan in the catalogue "
                         f"(carrier says {device.rate_plan_code or 'none'!r}), so there is no plan to keep.",
                         field="rate_plan")
    if DevicePin.objects.filter(device=device).exists():
        raise Conflict(f"SIM {device.iccid} is already pinned; unpin it first to change the reason.", field="iccid")


def device_pin(*, device: Device, reason: str, user=None) -> DevicePin:
    """Pin `device` to its current rate plan. A SIM without a current plan has nothing to keep."""
    pin_check(device=device, reason=reason)
    reason = reason.strip()
    try:
        with transaction.atomic():
            return DevicePin.objects.create(device=device, reason=reason, pinned_by=user)
    except IntegrityError:
        existing = DevicePin.objects.filter(device=device).first()
        raise Conflict(f"SIM {device.iccid} is already pinned"
                       + (f" ({existing.reason!r})" if existing else "") + "; unpin it first to change the reason.",
                       field="iccid") from None


def device_unpin(*, pin: DevicePin) -> None:
    pin.delete()
