"""Template filters of the dashboard: a dict looked up by a variable key, a duration in plain words, money with its
currency."""
from __future__ import annotations

from django import template

from carrieropt.money import cents

register = template.Library()


@register.filter
def get_item(mapping: dict, key):
    return mapping.get(key) if isinstance(mapping, dict) else None


@register.filter
def duration(seconds) -> str:
    """12.3 -> "12.3 s", 75 -> "1 min 15 s", 3720 -> "1 h 2 min"; "" when unknown."""
    if seconds is None or seconds == "":
        return ""
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


@register.filter
def money(value, currency: str = "") -> str:
    """An amount as the account is billed: to the cent (half up), thousands grouped, its currency after it,
    as in "1,234.56 USD"; "—" when unknown."""
    if value is None or value == "":
        return "—"
    return f"{cents(value):,} {currency}".strip()
