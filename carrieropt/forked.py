"""Work done by a forked child process beside the one that forked it: the machine's other core.

A django-q worker runs one task at a time on one core; a finalize at a million SIMs has parts that need nothing
of each other for seconds (the frontier's bounds while the rows are written). `Child` forks (the child sees
the parent's memory as it was: no copying of the inputs), runs a function that reports through `send`, and
the parent reads those reports in order. The child never returns into the parent's code: it ends with
os._exit, so nothing the parent holds (database connections, files, locks) is closed or flushed by it.

No database access in the child: every query raises (the parent's connection is its transaction's: the child
must never use it). The inherited connection objects are never closed there: closing one would end the parent's
session on the server.
"""
from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import pickle
import queue
import signal
import struct
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from django.db import connections

log = logging.getLogger(__name__)

_HEADER = struct.Struct("<Q")


class ChildFailed(Exception):
    """The child raised (its traceback is the message) or ended without reporting."""


def fork_available() -> bool:
    return hasattr(os, "fork")


def _refuse(*_args, **_kwargs):
    raise RuntimeError("no database access in this child process (the parent's connection is its transaction's)")


def _no_queries() -> contextlib.ExitStack:
    stack = contextlib.ExitStack()
    for conn in connections.all(initialized_only=True):
        stack.enter_context(conn.execute_wrapper(_refuse))
    return stack


def _end_with_parent(parent: int) -> None:
    """In the child: be killed when the parent dies (a worker killed mid-finalize leaves no child computing for
    nobody). Linux's PR_SET_PDEATHSIG; elsewhere the child runs to its end."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


_PR_SET_PDEATHSIG = 1


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class Child:
    """fn(send) in a forked child; the parent gets each send(obj) from receive(), in order.

    The parent drains the pipe in a thread, so the child never waits for the parent to read."""

    def __init__(self, fn: Callable[[Callable[[Any], None]], None]):
        read_fd, write_fd = os.pipe()
        parent = os.getpid()
        try:
            pid = os.fork()
        except OSError:
            os.close(read_fd)
            os.close(write_fd)
            raise
        if pid == 0:  # the child
            code = 1
            try:
                os.close(read_fd)
                _end_with_parent(parent)

                def send(obj) -> None:
                    data = pickle.dumps(("ok", obj), protocol=pickle.HIGHEST_PROTOCOL)
                    _write_all(write_fd, _HEADER.pack(len(data)) + data)

                with _no_queries():
                    fn(send)
                code = 0
            except BaseException:  # noqa: BLE001 — reported to the parent, which decides
                with contextlib.suppress(BaseException):
                    data = pickle.dumps(("error", traceback.format_exc()))
                    _write_all(write_fd, _HEADER.pack(len(data)) + data)
            finally:
                os._exit(code)
        os.close(write_fd)
        self.pid, self._fd, self._messages = pid, read_fd, queue.Queue()
        self._reader = threading.Thread(target=self._read, name=f"child-{pid}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        try:
            with os.fdopen(self._fd, "rb") as pipe:
                while True:
                    header = pipe.read(_HEADER.size)
                    if len(header) < _HEADER.size:
                        break
                    data = pipe.read(_HEADER.unpack(header)[0])
                    self._messages.put(pickle.loads(data))  # noqa: S301 — our own child's
        except Exception:  # noqa: BLE001
            log.exception("reading child %s", self.pid)
        finally:
            self._messages.put(("eof", None))

    def receive(self, *, wait: Callable[[], None] | None = None, every: float = 30.0, deadline: float | None = None):
        """The child's next report; `wait` is called every `every` seconds meanwhile (a heartbeat). Past
        `deadline` (time.monotonic()) without one, ChildFailed: a child that hangs does not hold the parent."""
        while True:
            timeout = every if deadline is None else min(every, deadline - time.monotonic())
            if timeout <= 0:
                raise ChildFailed(f"child process {self.pid} did not report in time")
            try:
                kind, obj = self._messages.get(timeout=timeout)
                break
            except queue.Empty:
                if wait is not None:
                    wait()
        if kind == "ok":
            return obj
        self._messages.put((kind, obj))  # it stays failed
        if kind == "error":
            raise ChildFailed(obj)
        raise ChildFailed(f"child process {self.pid} ended without reporting")

    def close(self) -> None:
        """End the child if it still runs, and reap it."""
        if self.pid is None:
            return
        with contextlib.suppress(ChildProcessError):
            done, _status = os.waitpid(self.pid, os.WNOHANG)
            if not done:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
        self.pid = None
        self._reader.join(timeout=5)

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
