"""A Control Center (Jasper) carrier simulator over real HTTP on loopback, for the demo and the tests."""
from carriers.simulator.carrier import ERROR_CODES, Faults, SimResponse, SimulatedCarrier, carrier_date
from carriers.simulator.server import SimulatorServer

__all__ = ["ERROR_CODES", "Faults", "SimResponse", "SimulatedCarrier", "SimulatorServer", "carrier_date"]
