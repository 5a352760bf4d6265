"""Process groups for ``torchrun``: one process per GPU (NCCL) or per CPU worker (gloo).

``torchrun`` sets RANK, WORLD_SIZE and LOCAL_RANK; without them the run is a single process and
every helper here is a no-op, so the training loop reads the same either way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Distributed:
    """Where this process stands: rank among world_size processes, and the device it trains on."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 logs, writes samples and checkpoints."""
        return self.rank == 0


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """"auto" -> cuda:<local rank> when CUDA is available, else cpu; anything else as given."""
    if device == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available here; use device 'auto' or 'cpu'")
    if resolved.type == "cuda" and resolved.index is None:
        resolved = torch.device(f"cuda:{local_rank}")
    return resolved


def setup(device: str) -> Distributed:
    """Join the torchrun process group when there is one (NCCL for CUDA, gloo for CPU)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    resolved = resolve_device(device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if resolved.type == "cuda":
            torch.cuda.set_device(resolved)
        dist.init_process_group(backend="nccl" if resolved.type == "cuda" else "gloo")
    return Distributed(rank, world_size, local_rank, resolved)


def teardown(state: Distributed) -> None:
    if state.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(state: Distributed) -> None:
    if state.enabled:
        if state.device.type == "cuda":
            dist.barrier(device_ids=[state.device.index])
        else:
            dist.barrier()


def mean_over_ranks(state: Distributed, tensor: torch.Tensor) -> torch.Tensor:
    """The element-wise mean of ``tensor`` over all processes (``tensor`` itself when alone)."""
    if not state.enabled:
        return tensor
    tensor = tensor.clone()
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor / state.world_size


def broadcast_object(state: Distributed, value: Any) -> Any:
    """Rank 0's ``value`` on every process (for choices such as a timestamped output folder)."""
    if not state.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def check_same_parameters(state: Distributed, modules: dict[str, torch.nn.Module]) -> None:
    """Raise unless every parameter is bit-identical on all processes (DDP's invariant).

    The element-wise max and min over the ranks are equal exactly when all ranks agree.
    """
    if not state.enabled:
        return
    for name, module in modules.items():
        flat = torch.cat([p.detach().flatten().double() for p in module.parameters()])
        high, low = flat.clone(), flat.clone()
        dist.all_reduce(high, op=dist.ReduceOp.MAX)
        dist.all_reduce(low, op=dist.ReduceOp.MIN)
        if not torch.equal(high, low):
            raise RuntimeError(f"the {name} parameters differ between the {state.world_size} processes")
