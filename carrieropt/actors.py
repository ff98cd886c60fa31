"""Who did something (started, applied, cancelled), as it is recorded and shown: a user's name, or what acted alone."""
from __future__ import annotations

import getpass

SCHEDULE = "schedule"  # the optimization window's hourly check
AUTOMATIC = "automatic (auto-apply)"  # the account's automatic push after a session


def user_actor(user) -> str:
    """The signed-in user (dashboard, admin) or the API token's user (AMOP's own user, for AMOP)."""
    return user.get_username()


def command_actor() -> str:
    """A management command, with the operating-system account that ran it when it can be told."""
    try:
        return f"command ({getpass.getuser()})"
    except (KeyError, OSError):  # no passwd entry for the uid (containers)
        return "command"
