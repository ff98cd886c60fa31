"""Stopping the child processes we start (simulator, qcluster) promptly and completely."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess


def process_stop(proc: subprocess.Popen, *, timeout: float = 20.0) -> None:
    """SIGTERM the process itself, then SIGKILL whatever is left of its process group.

    Only the leader gets SIGTERM: a qcluster whose workers are signalled too waits
    for them in vain (measured: 0.9 s this way, never within 25 s the other way).
    The process must have been started with start_new_session=True.
    """
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
