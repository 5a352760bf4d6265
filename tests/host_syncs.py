"""Count the operations that would make the host wait for a GPU, on any device (a CPU included).

CUDA's sync debug mode (``torch.cuda.set_sync_debug_mode``) needs a GPU; this counts the same
things from the operator stream, so a test on the CPU can check that a training step has none:
- reading a value: ``item``, ``bool``/``int``/``float`` of a tensor (``aten._local_scalar_dense``),
  ``tolist`` and ``numpy`` (which read memory without an operator);
- results whose size depends on the data: ``nonzero``, ``masked_select``, ``unique``, boolean
  indexing;
- tensors made from Python data (``torch.tensor``, ``new_tensor``, indexing with a list):
  ``aten.lift_fresh``, a blocking host-to-device copy when the target is a GPU.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator

import torch
from torch.utils._python_dispatch import TorchDispatchMode

_SYNCING = {
    "aten._local_scalar_dense", "aten.nonzero", "aten.masked_select", "aten.unique_dim",
    "aten._unique2", "aten.unique_consecutive", "aten.lift_fresh",
}  # fmt: skip


class _Recorder(TorchDispatchMode):
    def __init__(self, counts: Counter, host_tensors: set[int]) -> None:
        super().__init__()
        self.counts = counts
        self.host_tensors = host_tensors

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket._qualified_op_name.replace("::", ".")
        if name == "aten._local_scalar_dense" and id(args[0]) in self.host_tensors:
            pass
        elif name in _SYNCING:
            self.counts[name] += 1
        elif name in ("aten.index", "aten.index_put", "aten.index_put_") and any(
            isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in (args[1] or ()) if i is not None
        ):
            self.counts[f"{name} (boolean mask)"] += 1
        return func(*args, **(kwargs or {}))


def optimizer_host_tensors(*optimizers: torch.optim.Optimizer) -> list[torch.Tensor]:
    """The step counters of optimisers such as Adam (capturable=False): they stay on the host even
    when the parameters are on a GPU, so reading them is no device sync."""
    return [state["step"] for opt in optimizers for state in opt.state.values()
            if isinstance(state.get("step"), torch.Tensor) and state["step"].device.type == "cpu"]


@contextlib.contextmanager
def count_host_syncs(host_tensors: list[torch.Tensor] = ()) -> Iterator[Counter]:
    """``with count_host_syncs() as counts:`` -> Counter of would-be host syncs by operation.
    Reads of ``host_tensors`` (tensors that live on the host on every device, e.g.
    ``optimizer_host_tensors``) are not counted."""
    counts: Counter = Counter()
    ignored = {id(t) for t in host_tensors}
    originals = {name: getattr(torch.Tensor, name) for name in ("tolist", "numpy")}

    def wrap(name: str, original):
        def read(self, *args, **kwargs):
            counts[f"Tensor.{name}"] += 1
            return original(self, *args, **kwargs)

        return read

    for name, original in originals.items():
        setattr(torch.Tensor, name, wrap(name, original))
    try:
        with _Recorder(counts, ignored):
            yield counts
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)
