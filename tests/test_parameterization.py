"""The official SEGNN code's conventions: its ``O3TensorProduct`` and its (e3nn's) gates.

The official product is e3nn's fully connected product with weights drawn from
``U(±1/sqrt(fan_in))``, its output divided by ``1/sqrt(fan_in)`` per output slice, and scalar
biases from ``U(±1/sqrt(fan_in))``. Written here from that description, it is the reference an
optimizer step of segnn's ``standard`` product must reproduce; the ``normalized`` product, from
the same function, must not (Adam would move it ``sqrt(fan_in)`` times less). Its gates are
e3nn's, whose SiLU and sigmoid are scaled to unit second moment.
"""

import math

import pytest
import torch
from e3nn import o3

import segnn
from segnn.backends.e3nn import ReferenceTensorProduct
from segnn.o3.gate import Gate, second_moment_gain
from segnn.o3.tensor_product import ConditionedTensorProduct

IRREPS = ("4x0e+3x1o+2x2e", "1x0e+1x1o+1x2e", "5x0e+3x1o+2x2e")


class OfficialTensorProduct(torch.nn.Module):
    """The official SEGNN product as its paper's code describes it (float64)."""

    def __init__(self, irreps_in, irreps_attr, irreps_out):
        super().__init__()
        self.irreps_out = o3.Irreps(irreps_out)
        self.tp = o3.FullyConnectedTensorProduct(
            irreps_in, irreps_attr, irreps_out, shared_weights=True
        ).double()
        fan_in = [0] * len(self.irreps_out)
        for instruction in self.tp.instructions:
            mul_in = self.tp.irreps_in1[instruction.i_in1].mul
            fan_in[instruction.i_out] += mul_in * self.tp.irreps_in2[instruction.i_in2].mul
        self.fan_in = fan_in
        divisor = torch.ones(self.irreps_out.dim, dtype=torch.float64)
        columns = []
        for (_, ir), part, fan in zip(self.irreps_out, self.irreps_out.slices(), fan_in):
            divisor[part] = fan**-0.5
            if ir == o3.Irrep("0e"):
                columns += list(range(part.start, part.stop))
        self.register_buffer("divisor", divisor)
        self.register_buffer("bias_columns", torch.tensor(columns))
        self.bias = torch.nn.Parameter(torch.zeros(len(columns), dtype=torch.float64))

    def forward(self, x, attr):
        out = self.tp(x, attr) / self.divisor
        return out.index_add(1, self.bias_columns, self.bias.expand(len(x), -1))


def raw_weights_in_e3nn_order(product: ConditionedTensorProduct) -> torch.Tensor:
    """The product's parameters, laid out as e3nn's flat weight (no gains applied)."""
    views = product.weight_views()
    return torch.cat(
        [
            torch.stack([views[path] for path in paths], dim=1).reshape(-1)
            for paths, _ in ReferenceTensorProduct(product).pieces
        ]
    )


def fan_in(product: ConditionedTensorProduct, output: int) -> int:
    """Input channels times attribute copies reaching output block ``output``."""
    return sum(
        product.irreps_in[path.input].mul for path in product.instructions if path.output == output
    )


def one_adam_step(module, x, attr, target, lr=1e-2):
    optimizer = torch.optim.Adam(module.parameters(), lr=lr)
    optimizer.zero_grad()
    (module(x, attr) - target).pow(2).mean().backward()
    optimizer.step()
    with torch.no_grad():
        return module(x, attr)


def test_standard_initialisation_draws_uniform_weights_and_biases():
    torch.manual_seed(0)
    product = ConditionedTensorProduct("64x0e+32x1o", "1x0e+1x1o", "48x0e+16x1o", "standard")
    for path, weight in zip(product.instructions, product.weight_views()):
        bound = fan_in(product, path.output) ** -0.5
        assert weight.abs().max() <= bound
        assert weight.abs().max() > 0.9 * bound  # uniform over the whole interval
    assert [fan_in(product, 0), fan_in(product, 1)] == [64 + 32, 64 + 32]  # 0e from 0e x 0e
    assert 0 < product.bias.abs().max() <= fan_in(product, 0) ** -0.5  # and 1o x 1o; 1o alike
    normalized = ConditionedTensorProduct("64x0e+32x1o", "1x0e+1x1o", "48x0e+16x1o")
    assert torch.count_nonzero(normalized.bias) == 0
    assert float(normalized.weights[0].detach().std()) == pytest.approx(1.0, rel=0.05)


def test_one_adam_step_moves_the_standard_product_as_the_official_one():
    torch.manual_seed(0)
    ours = ConditionedTensorProduct(*IRREPS, parameterization="standard").double()
    official = OfficialTensorProduct(*IRREPS)
    with torch.no_grad():
        official.tp.weight.copy_(raw_weights_in_e3nn_order(ours))
        official.bias.copy_(ours.bias)
    x = torch.randn(32, ours.in_dim, dtype=torch.float64)
    attr = torch.randn(32, ours.attr_dim, dtype=torch.float64)
    target = torch.randn(32, ours.out_dim, dtype=torch.float64)
    before = official(x, attr).detach()
    assert torch.allclose(ours(x, attr), before, atol=1e-12)  # the same function
    # the normalised product holding the same function: Adam moves it far less
    normalized = ConditionedTensorProduct(*IRREPS, parameterization="normalized").double()
    with torch.no_grad():
        for theirs, mine, path in zip(
            normalized.weight_views(), ours.weight_views(), ours.instructions
        ):
            theirs.copy_(mine * math.sqrt(fan_in(ours, path.output)))
        normalized.bias.copy_(ours.bias)
    assert torch.allclose(normalized(x, attr), before, atol=1e-12)

    moved = one_adam_step(official, x, attr, target)
    assert torch.allclose(one_adam_step(ours, x, attr, target), moved, atol=1e-10)
    change_official = (moved - before).norm()
    change_normalized = (one_adam_step(normalized, x, attr, target) - before).norm()
    assert change_official > 2 * change_normalized


def test_the_paper_recipe_uses_the_official_weights_and_gates():
    config = segnn.load_config("configs/qm9.yaml")
    model = segnn.build_model(config)
    products = [m for m in model.modules() if isinstance(m, ConditionedTensorProduct)]
    gates = [m for m in model.modules() if isinstance(m, Gate)]
    assert products and all(p.parameterization == "standard" for p in products)
    assert gates and all(g.normalize for g in gates)


@pytest.mark.parametrize("function", [torch.nn.functional.silu, torch.sigmoid])
def test_normalized_gate_activations_have_unit_second_moment(function):
    """Checked against a plain Riemann sum of E[(g f(z))^2] over z ~ N(0, 1)."""
    gain = second_moment_gain(function)
    z = torch.linspace(-12, 12, 200_001, dtype=torch.float64)
    density = torch.exp(-z.pow(2) / 2) / math.sqrt(2 * math.pi)
    second_moment = ((gain * function(z)).pow(2) * density).sum() * (z[1] - z[0])
    assert float(second_moment) == pytest.approx(1.0, abs=1e-9)


def test_normalized_gate_scales_scalars_and_gates():
    plain, scaled = Gate("2x0e+1x1o"), Gate("2x0e+1x1o", normalize=True)
    x = torch.randn(5, plain.irreps_in.dim)
    ratio = scaled(x) / plain(x)
    assert torch.allclose(ratio[:, :2], torch.full((5, 2), scaled.scalar_gain))
    assert torch.allclose(ratio[:, 2:], torch.full((5, 3), scaled.gate_gain))
    assert scaled.scalar_gain == pytest.approx(1.6765, abs=1e-4)
    assert scaled.gate_gain == pytest.approx(1.8462, abs=1e-4)


def test_normalized_gate_is_e3nns_gate():
    """e3nn estimates its gains from a million random samples: equal to ~1e-3."""
    from e3nn.nn import Gate as E3nnGate

    ours = Gate("2x0e+1x1o+1x2e", normalize=True)
    theirs = E3nnGate("2x0e", [torch.nn.functional.silu], "2x0e", [torch.sigmoid], "1x1o+1x2e")
    x = torch.randn(7, ours.irreps_in.dim)
    assert torch.allclose(ours(x), theirs(x), rtol=3e-3, atol=1e-6)
