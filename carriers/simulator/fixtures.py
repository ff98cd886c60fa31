"""pytest fixtures that start the simulator on a free loopback port: `pytest_plugins = ["carriers.simulator.fixtures"]`."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest

from carriers.simulator.server import SimulatorServer
from carriers.simulator.testing import running_simulator


@pytest.fixture
def carrier_simulator_factory() -> Iterator[Callable[..., SimulatorServer]]:
    """start(sims=..., seed=..., faults=Faults(...)) -> a running SimulatorServer; all stopped after the test."""
    with ExitStack() as stack:
        yield lambda **kwargs: stack.enter_context(running_simulator(**kwargs))


@pytest.fixture
def carrier_simulator(carrier_simulator_factory) -> SimulatorServer:
    """200 demo SIMs (seed 7), no faults."""
    return carrier_simulator_factory()
