"""Both directions of an edge in one edge frame.

Radius graphs are symmetric: with the edge ``a → b`` comes ``b → a``, whose vector is the
negative. If ``D`` rotates ``r̂`` onto ``ŷ`` (:mod:`segnn.backends.edge_frame.frames`), then ``S D`` rotates
``-r̂`` onto ``ŷ``, with ``S`` the rotation by π about ``x``. In e3nn's basis ``S`` is diagonal:
``(-1)^l`` on the components ``m >= 0``, ``-(-1)^l`` on ``m < 0``; write it ``(-1)^l τ``. A
message product conditioned on the edge's harmonics does not depend on which rotation takes the
edge onto ``ŷ``, so the reverse message can be computed in the frame ``S D``:

* its input there, ``S [D h_a ; D h_b ; s]`` (receiver first), is ``τ`` times the forward
  edge's rotated input ``[D h_b ; D h_a ; s]`` with its two feature blocks exchanged and signed
  by ``(-1)^l``;
* the frame products couple ``m`` to ``m`` with the same weights for ``±m``, and the gates scale
  whole fields by invariant scalars, so ``τ`` (``-1`` on ``m < 0``) passes through the message
  MLP and cancels against the one of ``S^T`` when rotating back: the reverse message is
  ``D^T (-1)^l y`` for the MLP's output ``y`` on the unsigned input;
* the exchange and the signs act on the rows of the first product's weights:
  ``x̃ W = x W̃``, ``W̃`` being ``W`` with the two feature blocks of rows exchanged and signed.

So each pair is rotated into its frame once (half the rotations and gathers of the message
inputs), and the first product of both directions is one matmul ``x @ [W | W̃]`` whose
``[pairs, 2 N]`` result already is ``[2 pairs, N]``: the two directions interleaved, ``a → b``
then ``b → a``. The rest of the message MLP and the rotation back run per directed edge in that
order. The result equals the per-edge frame (and the ordinary product) to rounding, derivatives
with respect to positions included (``tests/test_backends.py``).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from segnn.backends.edge_frame.frames import FrameConcat


class EdgePairs(NamedTuple):
    """A symmetric graph's edges pair by pair (see the module docstring).

    ``source``, ``target`` ``[P]``: the edges ``a → b`` (``a < b``); ``receivers`` ``[2P]``:
    where the interleaved messages go (``b``, then ``a``, per pair); ``rotations``:
    :func:`~segnn.backends.edge_frame.frames.frame_rotations` of ``pos[a] - pos[b]``, ``[P, d', d]`` per
    degree; ``back_rotations``: ``[P, 2, d', d]``, ``D`` and ``(-1)^l D`` (rotating each
    direction's message back); ``edge_scalars`` ``[P, S]``, ``edge_weights`` ``[P]`` or ``None``:
    those of the edges ``a → b`` (the same for ``b → a``).
    """

    source: torch.Tensor
    target: torch.Tensor
    receivers: torch.Tensor
    rotations: list[torch.Tensor]
    back_rotations: list[torch.Tensor]
    edge_scalars: torch.Tensor
    edge_weights: torch.Tensor | None

    def part(self, start: int, stop: int) -> EdgePairs:
        """The pairs ``start:stop`` (views)."""
        pairs = slice(start, stop)
        return EdgePairs(
            self.source[pairs],
            self.target[pairs],
            self.receivers[2 * start : 2 * stop],
            [rotation[pairs] for rotation in self.rotations],
            [rotation[pairs] for rotation in self.back_rotations],
            self.edge_scalars[pairs],
            None if self.edge_weights is None else self.edge_weights[pairs],
        )


def edge_pairs(
    edge_index: torch.Tensor,
    rotations: list[torch.Tensor],
    edge_scalars: torch.Tensor,
    edge_weights: torch.Tensor | None,
) -> EdgePairs:
    """:class:`EdgePairs` of a graph in the paired layout (:mod:`segnn.data.graph`: the first
    ``P`` edges ``a → b``, the last ``P`` their reverses), from the frame ``rotations`` of the
    first ``P`` edge vectors and every edge's ``edge_scalars`` ``[E, S]`` and ``edge_weights``
    ``[E]`` (functions of the distance, equal for both directions)."""
    num_pairs = edge_index.shape[1] // 2
    source, target = edge_index[0, :num_pairs], edge_index[1, :num_pairs]
    receivers = torch.stack([target, source], dim=1).flatten()
    back_rotations = [
        torch.stack([rotation, rotation if l % 2 == 0 else -rotation], dim=1)
        for l, rotation in enumerate(rotations, start=1)
    ]
    return EdgePairs(
        source,
        target,
        receivers,
        rotations,
        back_rotations,
        edge_scalars[:num_pairs],
        None if edge_weights is None else edge_weights[:num_pairs],
    )


class PairMirror:
    """The weights ``[W | W̃]`` of a first message product that computes both directions of
    each pair (module docstring), for inputs concatenated by ``frame_concat`` whose inputs
    ``swap`` (receiver, sender) have the same irreps.

    ``W̃`` per ``|m| = k``: the rows of the two swapped inputs exchanged, channel for channel,
    and every row of degree ``l`` signed by ``(-1)^l``. Input: the effective weights
    ``[K_k, N_k]`` per ``k`` → ``[K_k, 2 N_k]``.
    """

    def __init__(self, frame_concat: FrameConcat, swap: tuple[int, int] = (0, 1)):
        first, second = swap
        if frame_concat.irreps_in[first] != frame_concat.irreps_in[second]:
            raise ValueError(
                f"mirrored inputs need equal irreps, got {frame_concat.irreps_in[first]} "
                f"and {frame_concat.irreps_in[second]}"
            )
        partner_input = {first: second, second: first}
        self.num_parts = frame_concat.lmax + 1
        self.rows, self.signs = [], []
        for k in range(self.num_parts):
            column, labels, signs = {}, [], []
            for i, n in frame_concat.order:
                mul, l = frame_concat.blocks[i][n]
                if l >= k:
                    for channel in range(mul):
                        column[i, n, channel] = len(labels)
                        labels.append((i, n, channel))
                        signs.append((-1.0) ** l)
            self.rows.append(
                torch.tensor([column[partner_input.get(i, i), n, c] for i, n, c in labels])
            )
            self.signs.append(torch.tensor(signs, dtype=torch.float64).unsqueeze(1))
        self._cache: dict = {}

    def tensors(
        self, dtype: torch.dtype, device: torch.device
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``(rows, signs)`` per part on ``device``, the signs in ``dtype``."""
        key = (dtype, device)
        if key not in self._cache:
            self._cache[key] = [
                (rows.to(device), signs.to(device=device, dtype=dtype))
                for rows, signs in zip(self.rows, self.signs)
            ]
        return self._cache[key]

    def __call__(self, weights: list[torch.Tensor]) -> list[torch.Tensor]:
        tensors = self.tensors(weights[0].dtype, weights[0].device)
        mirrored = []
        for k, weight in enumerate(weights):
            if k < self.num_parts and weight.shape[0]:
                rows, signs = tensors[k]
                weight = torch.cat([weight, weight.index_select(0, rows) * signs], dim=1)
            else:
                weight = torch.cat([weight, weight], dim=1)  # no input reaches this part
            mirrored.append(weight)
        return mirrored
