"""Who may push recommended plans to a carrier: tenant members given `pushes.apply_recommendations`."""
from __future__ import annotations

APPLY_PERMISSION = "pushes.apply_recommendations"
APPLY_REFUSED = ("Applying recommendations changes SIMs on the carrier and needs the permission "
                 "'Can push recommended rate plans to the carrier' (pushes.apply_recommendations); ask an "
                 "administrator. You can still see every recommendation.")


def can_apply(user) -> bool:
    return bool(user and user.is_authenticated and user.has_perm(APPLY_PERMISSION))
