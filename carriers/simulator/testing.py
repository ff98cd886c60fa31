"""Test helper around the simulator: run it on loopback in a background thread."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from carriers.simulator.carrier import Faults, SimulatedCarrier
from carriers.simulator.server import SimulatorServer


@contextmanager
def running_simulator(*, sims: int = 200, seed: int = 7, faults: Faults | None = None,
                      **options) -> Iterator[SimulatorServer]:
    """A simulator on 127.0.0.1 and a free port, in a background thread, stopped on exit."""
    carrier = SimulatedCarrier(sims=sims, seed=seed, faults=faults, **options)
    with SimulatorServer(carrier) as server:
        yield server
