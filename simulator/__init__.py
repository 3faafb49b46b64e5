"""A simulated fleet on one machine, running the real device code against a real server.

`scripts/simulate-fleet` (`python -m simulator`) enrolls N devices with enrollment tokens it
creates with an operator token, then runs each one as shipped: the inference service (pipeline on
the factory model, outbox, sync) and the updater (TUF, A/B slots, probation). Small fleets run as
separate processes (`tinylcm run` + `tinylcm updater` per device); large ones as in-process agents,
many devices sharing one Python process, each with its own data directory, outbox, sync loop and
updater. Drift and faults (network cut, kill -9) are injected on a schedule; a live summary is printed.
"""

from simulator.spec import FleetSpec, SimulationError

__all__ = ["FleetSpec", "SimulationError"]
