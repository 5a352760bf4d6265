"""Data order as a pure function of the step, so a resumed run sees exactly the same batches.

The training tuples are visited epoch by epoch, each epoch in its own seeded permutation. Step s
takes the global positions [s * G, (s + 1) * G) of that endless sequence, G = batch_size *
world_size, and rank r takes its consecutive batch_size of them: the ranks see disjoint tuples
(as DistributedSampler does) and together the same data a single process with batch G would.
The only state is the step count: ``StepBatchSampler(..., start_step=s)`` resumes at step s.

With several M (``num_sources``), step s trains at ``sources_at_step(num_sources, seed, s)``, drawn
from a generator seeded by (seed, s): the same on every rank, and the same after a resume.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch


def epoch_permutation(num_items: int, seed: int, epoch: int) -> torch.Tensor:
    """The order of the tuples in ``epoch``: (num_items,) int64."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(num_items, generator=generator)


def sources_at_step(num_sources: Sequence[int], seed: int, step: int) -> int:
    """The M that step ``step`` trains at: one of ``num_sources``, uniformly, fixed by (seed, step)."""
    if len(num_sources) == 1:
        return int(num_sources[0])
    choice = np.random.default_rng([seed, step]).integers(len(num_sources))
    return int(num_sources[choice])


class StepBatchSampler(torch.utils.data.Sampler[list[tuple[int, int]]]):
    """Batches for steps start_step, ..., steps - 1 on one rank, as ``(tuple index, M)`` pairs
    (``msgen.data.TupleDataset`` then loads only the first M sources of each tuple).

    num_items: training tuples; batch_size: per rank; num_sources: the M to draw from;
    rank, world_size: this process's share.
    """

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        steps: int,
        num_sources: Sequence[int] = (2,),
        seed: int = 0,
        start_step: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if num_items < 1:
            raise ValueError(f"num_items must be >= 1, got {num_items}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        if not 0 <= start_step <= steps:
            raise ValueError(f"start_step must be in [0, steps={steps}], got {start_step}")
        self.num_items = num_items
        self.batch_size = batch_size
        self.steps = steps
        self.num_sources = tuple(num_sources)
        self.seed = seed
        self.start_step = start_step
        self.rank = rank
        self.world_size = world_size
        self._cached: tuple[int, torch.Tensor] | None = None  # the last epoch's permutation

    def __len__(self) -> int:
        return self.steps - self.start_step

    def batch_at(self, step: int) -> list[int]:
        """The indices rank ``rank`` trains on at ``step``."""
        first = (step * self.world_size + self.rank) * self.batch_size
        positions = range(first, first + self.batch_size)
        return [int(self._order(p // self.num_items)[p % self.num_items]) for p in positions]

    def _order(self, epoch: int) -> torch.Tensor:
        if self._cached is None or self._cached[0] != epoch:
            self._cached = (epoch, epoch_permutation(self.num_items, self.seed, epoch))
        return self._cached[1]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in range(self.start_step, self.steps):
            m = sources_at_step(self.num_sources, self.seed, step)
            yield [(index, m) for index in self.batch_at(step)]
