"""i-PI with segnn forces: segnn as the force client of an i-PI server.

i-PI (the ``ipi`` wheel's ``i-pi`` command) runs the dynamics (classical or path-integral, its
thermostats and barostats) and asks a client for the energy, forces and virial of each bead
over a socket. :func:`serve_ipi` is that client: ASE's ``SocketClient`` (it converts between
i-PI's atomic units and eV/Å) with a :class:`~segnn.calculator.SEGNNCalculator`, until i-PI
says it is done. The client's ``structure`` fixes the species in i-PI's atom order (the same
file i-PI starts from); stress is sent for fully periodic cells (NPT).

    i-pi input.xml &                       # <ffsocket mode="unix"><address>segnn</address>
    segnn ipi --checkpoint best.pt --structure init.xyz --unix segnn
"""

from __future__ import annotations

from ase import Atoms
from ase.calculators.socketio import SocketClient

from segnn.calculator import SEGNNCalculator


def serve_ipi(
    calculator: SEGNNCalculator,
    structure: Atoms,
    unixsocket: str | None = None,
    host: str = "localhost",
    port: int | None = None,
    timeout: float | None = 60.0,
) -> None:
    """Answer an i-PI server's force requests for ``structure``'s atoms (positions and cell
    come from i-PI) until it stops; connect through the UNIX socket ``unixsocket``
    (``/tmp/ipi_<name>``) or ``host:port``."""
    if (unixsocket is None) == (port is None):
        raise ValueError("give either a UNIX socket name or a TCP port of the i-PI server")
    atoms = structure.copy()
    atoms.calc = calculator
    client = SocketClient(host=host, port=port, unixsocket=unixsocket, timeout=timeout)
    try:
        client.run(atoms, use_stress=bool(atoms.pbc.all()))
    finally:
        client.close()
