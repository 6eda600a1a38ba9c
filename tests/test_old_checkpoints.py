"""Checkpoints written before backends became a run-time choice (their configs carry
``model.edge_frame`` and ``model.frame_kernels``) load, predict what they predicted then, and
evaluate. The files were written by commit dbb4d30 (tiny models, one epoch)."""

import json
from pathlib import Path

import numpy as np
import pytest
from ase.build import molecule

import segnn
from segnn.checkpoint import load_checkpoint
from segnn.cli import main

DATA = Path(__file__).parent / "data"
EXPECTED = json.loads((DATA / "checkpoints_before_backends.json").read_text())


def test_the_old_checkpoints_carry_the_retired_keys():
    config = load_checkpoint(DATA / "qm9_before_backends.pt")["config"]
    assert config["model"]["edge_frame"] is True and "frame_kernels" in config["model"]


@pytest.mark.parametrize("backend", ["auto", "plain", "e3nn"])
def test_an_old_property_model_predicts_what_it_did(backend):
    model = segnn.load_model(DATA / "qm9_before_backends.pt", backend=backend)
    values = [p.value for p in model.predict([molecule("CH4"), molecule("CH3CH2OH")])]
    assert np.allclose(values, EXPECTED["qm9_u0_eV"], rtol=1e-6, atol=1e-6)


def test_an_old_force_field_gives_the_same_energy_and_forces():
    atoms = molecule("CH3CH2OH")
    atoms.calc = segnn.SEGNNCalculator(DATA / "ethanol_before_backends.pt")
    assert atoms.get_potential_energy() == pytest.approx(EXPECTED["ethanol_energy_eV"], abs=1e-8)
    assert np.allclose(atoms.get_forces(), EXPECTED["ethanol_forces_eV_per_A"], atol=1e-8)


def test_an_old_checkpoint_evaluates_from_the_command_line(capsys):
    assert main(["evaluate", "--checkpoint", str(DATA / "ethanol_before_backends.pt")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["target"] == "energy" and report["forces_mae"] > 0
