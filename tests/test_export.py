"""segnn export: a .pt2 that torch alone runs reproduces the checkpoint calculator."""

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule
from ase.io import read

from segnn.calculator import SEGNNCalculator

CHECKPOINT = Path(__file__).parent / "data" / "ethanol_before_backends.pt"  # H, C, O; 5 Å
WATER = Path(__file__).parents[1] / "data" / "water" / "water32_gfn1xtb_330K.extxyz"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from segnn.cli import main

    path = tmp_path_factory.mktemp("export") / "ethanol.pt2"
    assert main(["export", str(CHECKPOINT), "--output", str(path)]) == 0
    return path


def structures():
    box = read(WATER, index=0)  # 96 atoms: more than the 11 traced at export
    small = box[:12].copy()  # a triclinic cell smaller than twice the 5 Å cutoff
    small.set_cell([[6.0, 0, 0], [1.5, 6.5, 0], [-1.0, 1.2, 7.0]], scale_atoms=False)
    small.wrap()
    return {"ethanol": molecule("CH3CH2OH"), "water_box": box, "small_triclinic": small}


def assert_same_as_the_checkpoint(atoms, exported, dtype, tolerance):
    """Energy, forces (and stress of periodic cells) of the export and of the checkpoint
    calculator in ``dtype``, relative to ``tolerance``."""
    from segnn.deploy import ExportedCalculator

    expected, actual = atoms.copy(), atoms.copy()
    expected.calc = SEGNNCalculator(CHECKPOINT, dtype=dtype)
    actual.calc = ExportedCalculator(exported)
    energy = expected.get_potential_energy()
    assert actual.get_potential_energy() == pytest.approx(energy, rel=tolerance)
    forces = expected.get_forces()
    assert np.abs(actual.get_forces() - forces).max() <= tolerance * np.abs(forces).max()
    if atoms.pbc.all():
        stress = expected.get_stress()
        assert np.abs(actual.get_stress() - stress).max() <= tolerance * np.abs(stress).max()


@pytest.mark.parametrize("name", ["ethanol", "water_box", "small_triclinic"])
def test_the_export_reproduces_the_checkpoint_calculator(exported, name):
    assert_same_as_the_checkpoint(structures()[name], exported, torch.float64, 1e-9)


def test_a_fresh_process_runs_the_export_without_segnn_models(exported):
    code = (
        "import sys, json\n"
        "from ase.build import molecule\n"
        "from segnn.deploy import ExportedModel\n"
        f"model = ExportedModel({str(exported)!r})\n"
        "energy, forces, virial = model(molecule('CH3CH2OH'))\n"
        "print(json.dumps({'energy': energy, 'models': 'segnn.models' in sys.modules,\n"
        "                  'species': model.species, 'cutoff': model.cutoff}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["models"] is False
    assert report["species"] == ["H", "C", "O"] and report["cutoff"] == 5.0
    atoms = molecule("CH3CH2OH")
    atoms.calc = SEGNNCalculator(CHECKPOINT, dtype=torch.float64)
    assert report["energy"] == pytest.approx(atoms.get_potential_energy(), rel=1e-9)


def test_bad_exports_and_inputs_are_refused(exported, tmp_path):
    from segnn.deploy import ExportedCalculator, ExportedModel, ExportError

    with pytest.raises(ExportError, match="not found"):
        ExportedModel(tmp_path / "missing.pt2")
    corrupt = tmp_path / "corrupt.pt2"
    corrupt.write_bytes(exported.read_bytes()[:5000])
    with pytest.raises(ExportError, match="not a .pt2 package|could not be loaded"):
        ExportedModel(corrupt)
    foreign = tmp_path / "foreign.pt2"
    with zipfile.ZipFile(foreign, "w") as archive:
        archive.writestr("something.txt", "not a model")
    with pytest.raises(ExportError):
        ExportedModel(foreign)
    import segnn.deploy.exported

    with pytest.MonkeyPatch.context() as patch:  # a package of another contract version
        patch.setattr(segnn.deploy.exported, "FORMAT", "segnn-pt2-v2")
        with pytest.raises(ExportError, match="format 'segnn-pt2-v1'.*reads 'segnn-pt2-v2'"):
            ExportedModel(exported)
    model = ExportedModel(exported)
    with pytest.raises(ValueError, match="element.*N.*not known"):
        model(molecule("HCN"))
    flat = Atoms("H2O", positions=[[0, 0, 0], [0.9, 0, 0], [0, 0.9, 0]])
    flat.cell, flat.pbc = [[5, 0, 0], [0, 5, 0], [0, 0, 0]], True
    flat.calc = ExportedCalculator(exported)
    with pytest.raises(ValueError, match="volume|cell"):
        flat.get_stress()


def test_export_refuses_a_model_that_is_no_force_field(tmp_path):
    from segnn.cli import main

    qm9 = Path(__file__).parent / "data" / "qm9_before_backends.pt"
    assert main(["export", str(qm9), "--output", str(tmp_path / "qm9.pt2")]) == 2


@pytest.mark.slow
def test_a_float32_export_matches_to_single_precision(tmp_path):
    from segnn.deploy.export import export_model

    path = tmp_path / "ethanol32.pt2"
    assert export_model(CHECKPOINT, path, torch.float32)["dtype"] == "float32"
    for atoms in (molecule("CH3CH2OH"), read(WATER, index=0)):
        assert_same_as_the_checkpoint(atoms, path, torch.float32, 1e-5)


def test_a_model_that_does_not_trace_gives_one_line_naming_the_backend(tmp_path, monkeypatch):
    import segnn.deploy.export
    from segnn.cli import main

    def untraceable(*args):
        raise RuntimeError("an op the tracer does not know\nmore detail")

    monkeypatch.setattr(segnn.deploy.export, "trace", untraceable)
    assert main(["export", str(CHECKPOINT), "--output", str(tmp_path / "x.pt2")]) == 2
