"""segnn's tensor products agree with the e3nn reference path on the same weights: outputs and
gradients, float64 and float32, for whole models."""

import pytest
import torch

import segnn
from segnn.o3.reference import use_reference_tensor_products
from segnn.testing import example_batch


def outputs_and_gradients(model, batch):
    model.zero_grad()
    output = model(batch)
    output.pow(2).sum().backward()
    return output.detach().clone(), [p.grad.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_reference_path_matches_on_a_qm9_model(dtype, tolerance):
    torch.manual_seed(0)
    model = segnn.build_model(
        {"model": {"hidden_features": 32, "lmax_hidden": 2, "lmax_attr": 3, "num_layers": 2}}
    ).to(dtype)
    # no highly symmetric molecules (CH4, C6H6, CF4): their vector features vanish by symmetry
    # and the instance norm of ~0 vectors amplifies float32 rounding differently on each path
    batch = example_batch(dtype=dtype, names=("H2O", "CH3CH2OH", "CH3COOH", "HCN"))
    ours, our_gradients = outputs_and_gradients(model, batch)
    use_reference_tensor_products(model)
    reference, reference_gradients = outputs_and_gradients(model, batch)
    scale = float(reference.abs().max())
    assert (ours - reference).abs().max() <= tolerance * scale
    # relative to the largest gradient: some parameters (e.g. biases feeding a norm) get ~0
    gradient_scale = max(float(g.abs().max()) for g in reference_gradients)
    for mine, theirs in zip(our_gradients, reference_gradients):
        assert (mine - theirs).abs().max() <= tolerance * gradient_scale
    use_reference_tensor_products(model, enabled=False)
    again, _ = outputs_and_gradients(model, batch)
    assert torch.equal(again, ours)
