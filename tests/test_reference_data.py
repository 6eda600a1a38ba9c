"""The committed molecular reference data: forces are the gradient of a potential energy.

Forces that are ``-dE/dx`` of an isolated molecule's energy carry no net force and no net
torque (the energy does not change when the molecule is moved or turned). Forces saved with a
dynamics constraint applied (e.g. ASE's ``FixCom`` projection ``F_i - m_i λ``) break both, and
no energy model could fit them."""

from pathlib import Path

import numpy as np
import pytest
from ase.io import read

DATA = Path(__file__).parents[1] / "data"
MOLECULES = [
    DATA / "ethanol" / "ethanol_gfn2xtb_500K.extxyz",
    DATA / "dipeptide" / "alanine_dipeptide_gfn2xtb_500K.extxyz",
]


@pytest.mark.parametrize("path", MOLECULES, ids=lambda path: path.parent.name)
def test_molecular_forces_have_no_net_force_or_torque(path):
    frames = read(path, ":")
    assert len(frames) == 1000
    for index, frame in enumerate(frames):
        forces = frame.get_forces()
        lever = frame.positions - frame.positions.mean(axis=0)
        net_force = np.abs(forces.sum(axis=0)).max()
        net_torque = np.abs(np.cross(lever, forces).sum(axis=0)).max()
        # both to the rounding of the written 8 decimals (times a lever arm for the torque)
        assert net_force < 1e-6 and net_torque < 1e-4, (index, net_force, net_torque)
