"""What the trainer needs to know about other processes (one process: nothing at all)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class DistContext:
    """Rank, world size and the collective operations the trainer uses.

    A single process uses :meth:`single`, whose operations do nothing.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device | None = None

    @classmethod
    def single(cls) -> "DistContext":
        return cls()

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, module: nn.Module) -> nn.Module:
        return module

    def average(self, values: dict[str, float]) -> dict[str, float]:
        return values

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    def barrier(self) -> None:
        return None
