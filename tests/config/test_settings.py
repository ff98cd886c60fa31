"""The project's settings: the task queue's limits, and a production configuration that passes check --deploy."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]

def test_q_cluster_timeout_below_retry_and_finite_attempts():
    from django.conf import settings

    assert settings.Q_CLUSTER["timeout"] < settings.Q_CLUSTER["retry"]
    assert settings.Q_CLUSTER["max_attempts"] >= 1


def test_check_deploy_with_production_settings_has_no_warnings(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "DATABASE_URL", "SECRET_KEY"}}
    env.update({
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(64),
        "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "DATABASE_URL": "postgres://carrieropt@db.internal:5432/carrieropt",
        "ALLOWED_HOSTS": "carrieropt.example.com",
        "CARRIEROPT_VAR_DIR": str(tmp_path),
    })
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout



ENV_READERS = {"envstr", "envbool", "envint", "envfloat"}


def settings_env_reads() -> set[str]:
    """Every environment variable config/settings.py reads, found in its source (carrieropt.env's readers)."""
    import ast

    tree = ast.parse((ROOT / "config" / "settings.py").read_text())
    names, other = set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ENV_READERS:
            first = node.args[0] if node.args else None
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                names.add(first.value)
            else:
                other.append(ast.unparse(node))
        elif isinstance(node, ast.Attribute) and node.attr in {"environ", "getenv"}:
            other.append(ast.unparse(node))
    # A name built at run time, or os.environ read directly, could not be checked against the README.
    assert not other, f"settings.py reads the environment other than by a literal name: {other}"
    return names


def readme_settings() -> set[str]:
    """The variables named in the first column of README's settings table."""
    import re

    lines = (ROOT / "README.md").read_text().splitlines()
    start = lines.index("### Settings (environment variables)")
    names, in_table = set(), False
    for line in lines[start + 1:]:
        if line.startswith("|"):
            in_table = True
            names.update(re.findall(r"`([A-Z][A-Z0-9_]*)`", line.split("|")[1]))
        elif in_table:
            break
    return names


def test_every_setting_read_from_the_environment_is_in_the_readme_and_no_other():
    read, listed = settings_env_reads(), readme_settings()
    assert len(read) > 40 and "DEBUG" in read and "AMOP_WEBHOOK_TIMEOUT" in read  # the parser finds them
    assert not read - listed, f"read by config/settings.py, missing from README's settings table: {sorted(read - listed)}"
    assert not listed - read, f"in README's settings table, not read by config/settings.py: {sorted(listed - read)}"
