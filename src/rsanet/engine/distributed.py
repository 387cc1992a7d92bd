"""Multi-process data parallelism: ``torchrun`` detection, process groups, samplers and
reductions.

The same command runs in one process or under ``torchrun`` (or any launcher that sets
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``): with more
than one process the group is initialised with ``nccl`` on GPUs and ``gloo`` on CPUs, every
process trains on its shard of each epoch (:class:`ResumableDistributedSampler`), metrics
are summed over processes (:func:`all_reduce_sum`), and only rank 0 writes files.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Dataset, DistributedSampler, Sampler


@dataclass(frozen=True)
class DistEnv:
    """Where this process stands: its rank among ``world_size`` processes, its rank on its
    machine, its device, and the backend (None in a single process)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None
    #: whether :func:`init_distributed` created the process group (and must destroy it)
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def launcher_env() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from the launcher's environment variables
    (``(0, 1, 0)`` when not launched by torchrun or a similar launcher)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    return rank, world, local


def resolve_device(preference: str, local_rank: int = 0) -> torch.device:
    """``auto``: this process's GPU when CUDA is available, else the CPU; ``cuda`` fails
    clearly without CUDA."""
    if preference not in ("auto", "cpu", "cuda"):
        raise ValueError(f"train.device must be auto, cpu or cuda, got {preference!r}")
    if preference == "cpu" or (preference == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError("train.device=cuda but CUDA is not available (use auto or cpu)")
    return torch.device("cuda", local_rank % torch.cuda.device_count())


def init_distributed(device: str = "auto", timeout_minutes: float = 30.0) -> DistEnv:
    """Detect the launcher, pick the device, and initialise the default process group
    when there is more than one process (``nccl`` on CUDA, ``gloo`` on CPU)."""
    rank, world, local = launcher_env()
    dev = resolve_device(device, local)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world <= 1:
        return DistEnv(device=dev)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    owns = False
    if not dist.is_initialized():
        dist.init_process_group(
            backend,
            rank=rank,
            world_size=world,
            timeout=datetime.timedelta(minutes=timeout_minutes),
        )
        owns = True
    return DistEnv(
        rank=rank,
        world_size=world,
        local_rank=local,
        device=dev,
        backend=dist.get_backend(),
        owns_group=owns,
    )


def cleanup(env: DistEnv) -> None:
    """Destroy the process group if :func:`init_distributed` created it."""
    if env.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def barrier(env: DistEnv) -> None:
    if env.is_distributed:
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """``tensor`` summed over the processes (returned; a copy travels through the
    backend's device)."""
    if not env.is_distributed:
        return tensor
    work = tensor.to(env.device if env.backend == "nccl" else "cpu").clone()
    dist.all_reduce(work, op=dist.ReduceOp.SUM)
    return work.to(tensor.device)


def broadcast_buffers(module: torch.nn.Module, env: DistEnv) -> None:
    """Give every process rank 0's buffers (e.g. BatchNorm statistics)."""
    if env.is_distributed:
        for buffer in module.buffers():
            dist.broadcast(buffer.data, src=0)


def derived_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from integers (e.g. ``(seed, epoch, rank)``)."""
    state = np.random.SeedSequence([int(p) % 2**32 for p in parts]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


class ResumableDistributedSampler(DistributedSampler):
    """:class:`~torch.utils.data.DistributedSampler` whose order is a function of
    ``(seed, epoch)`` only, with the state that a checkpoint records. Works in a single
    process too (``num_replicas=1, rank=0``)."""

    def __init__(
        self,
        dataset: Dataset,
        *,
        num_replicas: int = 1,
        rank: int = 0,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        super().__init__(
            dataset,
            num_replicas=num_replicas,
            rank=rank,
            shuffle=shuffle,
            seed=seed,
            drop_last=drop_last,
        )

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "seed": self.seed,
            "num_replicas": self.num_replicas,
            "shuffle": self.shuffle,
            "num_samples": len(self.dataset),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.set_epoch(int(state["epoch"]))
        self.seed = int(state["seed"])


class ShardSampler(Sampler[int]):
    """Evaluation indices of one process, ``rank, rank + world, ...``: every sample exactly
    once over all processes (no padding, so summed metrics are exact)."""

    def __init__(self, length: int, *, num_replicas: int = 1, rank: int = 0) -> None:
        self.length, self.num_replicas, self.rank = length, num_replicas, rank

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.length, self.num_replicas))

    def __len__(self) -> int:
        return len(range(self.rank, self.length, self.num_replicas))
