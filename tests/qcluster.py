"""Real `manage.py qcluster` processes against the test database, for tests about workers."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from django.db import connection

from carrieropt.processes import process_stop

ROOT = Path(__file__).resolve().parent.parent


def test_database_url() -> str:
    s = connection.settings_dict
    return f"postgres://{s['USER'] or 'postgres'}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


@contextmanager
def qcluster(*, workers: int = 1, env: dict | None = None, log_path: Path | None = None):
    """Start a cluster on the current test database; stop it (and its workers) afterwards."""
    environment = {**os.environ, "DEBUG": "1", "DATABASE_URL": test_database_url(), "Q_WORKERS": str(workers),
                   "Q_LOG_LEVEL": "INFO", **(env or {})}
    log_path = log_path or Path(os.devnull)
    log = open(log_path, "ab")  # noqa: SIM115 — closed in finally
    proc = subprocess.Popen([sys.executable, "manage.py", "qcluster"], cwd=ROOT, env=environment,  # noqa: S603
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    proc.log_path = log_path
    try:
        yield proc
    finally:
        process_stop(proc)
        log.close()


def wait_for(predicate, *, timeout: float, interval: float = 0.05, what: str = "condition", clusters=()):
    """Poll until predicate() is truthy; fail at once, with its log, if a cluster process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in clusters:
            if proc.poll() is not None:
                tail = Path(proc.log_path).read_text(errors="replace")[-2000:] if proc.log_path != Path(os.devnull) else ""
                raise AssertionError(f"qcluster exited with {proc.returncode} while waiting for {what}:\n{tail}")
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
