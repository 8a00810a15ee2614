"""Data-parallel training with PyTorch's own engine: `torchrun --nproc_per_node N -m minifreeze.train ...`.

Only what trains goes into DistributedDataParallel. The frozen prefix runs under no_grad *before* the
DDP module is called, so it has no parameters in DDP's buckets and adds no all-reduce traffic; each rank
computes it for its own examples. Every global batch (the user's --batch-size) is cut into one shard per
rank, and each rank's loss is weighted by its shard's share so the averaged gradient equals the
single-process gradient of the whole batch, even when the last batch does not split evenly.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from .errors import MinifreezeError
from .model import TrainablePart


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device_name: str) -> tuple[Dist, str]:
    """Join the process group torchrun describes in the environment; returns (Dist, device name)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Dist(), device_name
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_name != "cpu" and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local_rank)
        device_name = f"cuda:{local_rank}"
    elif device_name.startswith("cuda"):
        raise MinifreezeError(
            f"--device {device_name}: CUDA is not available on rank {rank}; use --device cpu"
        )
    else:
        device_name = "cpu"
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return Dist(rank, world_size, local_rank), device_name


def shard(indices: list[int], info: Dist) -> list[int]:
    """This rank's share of a global batch (strided, so shards differ in size by at most one)."""
    return indices[info.rank :: info.world_size]


def loss_weight(shard_size: int, batch_size: int, info: Dist) -> float:
    """DDP averages gradients over ranks; weighting by world * shard / batch turns that into the batch mean."""
    return shard_size * info.world_size / batch_size


def wrap(model: nn.Module, info: Dist, device: torch.device) -> nn.Module:
    """`model.TrainablePart` (suffix, head and loss: `model.from_prefix` as a module), inside DDP when running
    distributed. DDP buckets the parameters that require grad when it wraps: re-wrap if the set changes."""
    part = TrainablePart(model)
    if not info.enabled:
        return part
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(part, device_ids=ids)


def all_sum(values: list[float], info: Dist) -> list[float]:
    if not info.enabled:
        return values
    tensor = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(tensor)
    return tensor.tolist()


def any_flag(flag: bool, info: Dist) -> bool:
    """True on every rank when any rank raised it (e.g. a signal to stop): ranks must stop together."""
    return bool(all_sum([float(flag)], info)[0]) if info.enabled else flag


def gather(obj, info: Dist) -> list:
    if not info.enabled:
        return [obj]
    out = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def teardown(run_finished: bool) -> None:
    """Leave the process group while the interpreter is fully alive, never at exit.

    A gloo group still referenced at interpreter shutdown (DDP's reducer holds one, and modules with
    hooks sit in reference cycles) is destroyed during finalization, where it can abort a run that
    succeeded with "terminate called without an active exception". So collect those cycles first, and
    after a finished run wait at a barrier so no rank closes its connections while a peer still uses
    them. After an error there is no barrier: torchrun stops the other ranks.
    """
    if not dist.is_initialized():
        return
    gc.collect()
    if run_finished:
        dist.barrier()
    dist.destroy_process_group()
