"""scripts/committee_uncertainty.py: spread against error on real frames, two small models."""

import numpy as np
import torch

import segnn

CONFIG = "configs/ethanol_forces.yaml"
SMALL = ["model.hidden_features=8", "model.num_layers=1"]


def test_committee_spread_against_error(load_script, tmp_path):
    script = load_script("committee_uncertainty")
    frames, forces_key = script.split_frames(CONFIG, "test")
    assert len(frames) == 100 and forces_key == "forces"
    members = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        members.append(segnn.build_model(segnn.load_config(CONFIG, SMALL)))
    errors = script.committee_errors(members, frames[:6], forces_key)
    assert errors["mae"].shape == (6,) and errors["atom_spread"].shape == (6 * 9,)
    assert (errors["mean_spread"] > 0).all() and len(errors["member_mae"]) == 2
    # the committee mean's error is at most the members' mean error (triangle inequality)
    assert errors["mae"].mean() <= errors["member_mae"].mean() + 1e-12
    summary = script.summary(errors)
    assert -1 <= summary["spearman_atom_spread_vs_error"] <= 1
    assert summary["frames"] == 6


def test_worst_found_counts_the_overlap(load_script):
    script = load_script("committee_uncertainty")
    error = np.arange(20.0)
    assert script.worst_found(error, error) == 1.0
    assert script.worst_found(-error, error) == 0.0
