"""Data-parallel training over processes with ``torch.distributed`` (launched by ``torchrun``).

``torchrun --nproc_per_node N -m segnn train --config FILE`` starts N processes (ranks) that
train one model together (docs/distributed.md):

* every rank builds the same model from the same seed and walks the same seeded order of
  training items; each global batch of ``train.batch_size`` items is split into contiguous
  shares, one per rank (:func:`shard`), so ``train.batch_size`` stays the *global* batch;
* each rank's loss divides by the global batch's counts (graphs, atoms), so the shares' losses
  add up to the loss of the whole batch; ``DistributedDataParallel`` averages the gradients, and
  the trainer scales the local loss by the number of ranks: the update equals the one process
  would make on the whole batch (to rounding);
* validation predictions are computed on shares of the split and gathered (:func:`gather`);
  rank 0 alone writes the run directory and prints; stopping decisions (time budget, early
  stopping) are taken together: one clock (:func:`broadcast_seconds`) and metrics of the
  whole split on every rank.

Process groups use ``nccl`` on GPUs (one per rank, ``LOCAL_RANK``) and ``gloo`` on CPUs, with a
timeout (``SEGNN_DISTRIBUTED_TIMEOUT_S``, default 600 s): a rank that dies makes the others
fail with an error instead of waiting forever.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

TIMEOUT_ENV = "SEGNN_DISTRIBUTED_TIMEOUT_S"
T = TypeVar("T")


class DistributedError(RuntimeError):
    """A process of a distributed job lost the others (one died, or a collective timed out)."""


@dataclass(frozen=True)
class Context:
    """Where this process stands: ``rank`` of ``world_size`` processes, ``local_rank`` on its
    node (its GPU). One process: rank 0 of 1."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        """Rank 0: the one that writes files and prints."""
        return self.rank == 0


def launched() -> bool:
    """Whether a launcher (``torchrun``) started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def start(use_cuda: bool) -> Context:
    """Join the process group the launcher set up (``gloo`` on CPUs, ``nccl`` with CUDA); one
    process without a launcher gets the plain context."""
    if not launched():
        return Context()
    if not dist.is_initialized():
        timeout = datetime.timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, "600")))
        dist.init_process_group("nccl" if use_cuda else "gloo", timeout=timeout)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
    return Context(dist.get_rank(), dist.get_world_size(), local_rank)


def stop() -> None:
    """Leave the process group (if any)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def shard(items: Sequence[T], context: Context) -> Sequence[T]:
    """This rank's contiguous share of ``items`` (shares differ in size by at most one; in rank
    order they are ``items`` again)."""
    if not context.distributed:
        return items
    size, extra = divmod(len(items), context.world_size)
    start_at = context.rank * size + min(context.rank, extra)
    return items[start_at : start_at + size + (context.rank < extra)]


def gather(predicted: dict[str, torch.Tensor], context: Context) -> dict[str, torch.Tensor]:
    """Every rank's ``predicted`` tensors (CPU, rows first), concatenated in rank order."""
    if not context.distributed:
        return predicted
    shares: list[Any] = [None] * context.world_size
    dist.all_gather_object(shares, predicted)
    return {key: torch.cat([share[key] for share in shares]) for key in predicted}


def collective_device() -> torch.device:
    """Where tensors for collectives live: the rank's GPU under ``nccl``, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def totals(*values: float, context: Context) -> tuple[float, ...]:
    """The sums of ``values`` over the ranks (one collective for all of them)."""
    if not context.distributed:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=collective_device())
    dist.all_reduce(tensor)
    return tuple(tensor.tolist())


def broadcast_seconds(seconds: float, context: Context) -> float:
    """Rank 0's ``seconds`` on every rank (one clock for schedules and time budgets)."""
    if not context.distributed:
        return seconds
    tensor = torch.tensor([seconds], dtype=torch.float64, device=collective_device())
    dist.broadcast(tensor, src=0)
    return float(tensor.item())


def broadcast(value: T, context: Context) -> T:
    """Rank 0's ``value`` on every rank."""
    if not context.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(context: Context) -> None:
    if context.distributed:
        dist.barrier()
