"""Data order as a pure function of the step, so a resumed run sees exactly the same batches.

The training tuples are visited epoch by epoch, each epoch in its own seeded permutation. Step s
takes the global positions [s * G, (s + 1) * G) of that endless sequence, G = batch_size *
world_size, and rank r takes its consecutive batch_size of them: the ranks see disjoint tuples
(as DistributedSampler does) and together the same data a single process with batch G would.
The only state is the step count: ``StepBatchSampler(..., start_step=s)`` resumes at step s.

With several M (``num_sources``), step s draws ``sources_at_step(num_sources, seed, s, weights)``
from a generator seeded by (seed, s): the same on every rank, and the same after a resume. Every
person serves every M it can: a tuple holds min(n - 1, M_max) sources for a person of n images
(its *capacity*), and trains at the step's M or, when it has fewer sources, at the largest M of
``num_sources`` it holds (the batch is padded to its largest M, ``collate_tuples``). The step's M
is drawn with ``step_weights``, chosen so that over the tuples the M come out as wanted (uniform
over ``num_sources``); when every tuple holds M_max sources those weights are uniform and the draw
is the plain uniform one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch


def epoch_permutation(num_items: int, seed: int, epoch: int) -> torch.Tensor:
    """The order of the tuples in ``epoch``: (num_items,) int64."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(num_items, generator=generator)


def sources_at_step(num_sources: Sequence[int], seed: int, step: int, weights: Sequence[float] | None = None) -> int:
    """The M drawn for step ``step``: one of ``num_sources`` with probabilities ``weights`` (None:
    uniformly), fixed by (seed, step)."""
    if len(num_sources) == 1:
        return int(num_sources[0])
    rng = np.random.default_rng([seed, step])
    if weights is None or np.allclose(weights, 1 / len(num_sources), rtol=0, atol=1e-12):
        choice = rng.integers(len(num_sources))
    else:
        choice = min(int(np.searchsorted(np.cumsum(weights), rng.random(), side="right")), len(num_sources) - 1)
    return int(num_sources[choice])


def served_sources(num_sources: Sequence[int], capacity: int) -> int:
    """The largest M of ``num_sources`` that a tuple of ``capacity`` sources serves (0: none)."""
    return max((m for m in num_sources if m <= capacity), default=0)


def step_weights(num_sources: Sequence[int], capacities: Sequence[int]) -> tuple[list[float], list[float]]:
    """(weights of the step's M draw, the share of tuples each M then trains at), over sorted M.

    A tuple whose largest served M is a trains at min(drawn M, a). With G_j the share of tuples
    serving m_j (a >= m_j) and F_j the share whose largest is m_j, M = m_j comes out with
    probability q_j G_j + (sum_{i>j} q_i) F_j; solving for a uniform outcome from the largest M
    down gives q. When too few tuples serve a large M for it to reach its share, its q is capped
    (the returned shares say what the run gets)."""
    ms = sorted(set(int(m) for m in num_sources))
    served = np.array([served_sources(ms, c) for c in capacities])
    if len(served) == 0 or (served == 0).any():
        raise ValueError(f"every tuple must hold at least min(num_sources) = {ms[0]} sources")
    wanted = 1 / len(ms)
    at_least = [float(np.mean(served >= m)) for m in ms]
    exactly = [float(np.mean(served == m)) for m in ms]
    weights = [0.0] * len(ms)
    above, left = 0.0, 1.0
    for j in reversed(range(len(ms))):
        q = (wanted - above * exactly[j]) / at_least[j] if j else left
        weights[j] = min(max(q, 0.0), left)
        above += weights[j]
        left -= weights[j]
    shares = [weights[j] * at_least[j] + sum(weights[j + 1:]) * exactly[j] for j in range(len(ms))]
    return weights, shares


class StepBatchSampler(torch.utils.data.Sampler[list[tuple[int, int]]]):
    """Batches for steps start_step, ..., steps - 1 on one rank, as ``(tuple index, M)`` pairs
    (``msgen.data.TupleDataset`` then loads only the first M sources of each tuple).

    num_items: training tuples; batch_size: per rank; num_sources: the M to draw from;
    rank, world_size: this process's share; capacities: the sources each tuple holds (None: every
    tuple holds max(num_sources)).
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
        capacities: Sequence[int] | None = None,
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
        if capacities is not None and len(capacities) != num_items:
            raise ValueError(f"capacities must hold one count per tuple ({num_items}), got {len(capacities)}")
        full = capacities is None or min(capacities) >= max(self.num_sources)
        # Only when some tuple holds fewer sources than M_max: the plain case keeps the uniform draw.
        self.capacities = None if full else [int(c) for c in capacities]
        self.weights = None if full else step_weights(self.num_sources, self.capacities)[0]
        # The weights are over the sorted M; the draw must index the same order.
        self._draw_order = tuple(sorted(set(self.num_sources))) if not full else self.num_sources
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
            m = sources_at_step(self._draw_order, self.seed, step, self.weights)
            indices = self.batch_at(step)
            if self.capacities is None:
                yield [(index, m) for index in indices]
            else:
                yield [(index, min(m, served_sources(self._draw_order, self.capacities[index]))) for index in indices]
