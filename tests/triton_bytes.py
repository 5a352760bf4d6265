"""Count the bytes Triton kernels load, store and update atomically, under TRITON_INTERPRET=1.

``count_bytes()`` wraps the interpreter's memory operations (the ``create_masked_load``,
``create_masked_store``, ``create_atomic_rmw`` and ``create_atomic_cas`` of triton's
``interpreter_builder``, through which every tl.load, tl.store and tl.atomic_* passes) and its grid
executor (to know which kernel runs and which tensor argument each address belongs to). Only the
masked-in elements count, each with its element size, so the result is what the kernel's code
asks of memory, by kernel and by argument (the argument's name without ``_ptr``):

    with count_bytes() as counted:
        run_kernels()
    counted.bytes["_fuse_kernel"]["xi"] == {"load": ..., "store": 0, "atomic": 0}
    counted.distinct["_fuse_kernel"]["xi"]  # bytes of distinct addresses touched

Used by tests/test_fused_attention.py to hold ``msgen.ops.byte_model`` to the kernels exactly.
"""

from __future__ import annotations

import collections
import contextlib
import inspect
from collections.abc import Iterator

import numpy as np
import torch

KINDS = ("load", "store", "atomic")


class ByteCount:
    def __init__(self) -> None:
        self.bytes: dict = collections.defaultdict(lambda: collections.defaultdict(lambda: dict.fromkeys(KINDS, 0)))
        self._addresses: dict = collections.defaultdict(lambda: collections.defaultdict(set))
        self._kernel: str | None = None
        self._ranges: list[tuple[int, int, str]] = []
        self.launches: collections.Counter = collections.Counter()

    @property
    def distinct(self) -> dict[str, dict[str, int]]:
        """{kernel: {argument: bytes of the distinct addresses it touched}} (loads, stores, atomics)."""
        return {
            kernel: {name: sum(size for _, size in entries) for name, entries in args.items()}
            for kernel, args in self._addresses.items()
        }

    def plain(self) -> dict[str, dict[str, dict[str, int]]]:
        """The counts as plain dicts, arguments that moved no byte left out."""
        return {
            kernel: {name: dict(kinds) for name, kinds in args.items() if any(kinds.values())}
            for kernel, args in self.bytes.items()
        }

    def _record(self, kind: str, ptrs, mask) -> None:
        if self._kernel is None:
            return
        addresses = np.asarray(ptrs.data, dtype=np.uint64).reshape(-1)
        if mask is not None:
            addresses = addresses[np.asarray(mask.data, dtype=bool).reshape(-1)]
        size = ptrs.get_element_ty().primitive_bitwidth // 8
        for address in addresses.tolist():
            name = self._owner(address)
            self.bytes[self._kernel][name][kind] += size
            self._addresses[self._kernel][name].add((address, size))

    def _owner(self, address: int) -> str:
        for start, end, name in self._ranges:
            if start <= address < end:
                return name
        raise AssertionError(f"address {address:#x} is in no tensor argument of {self._kernel}")


@contextlib.contextmanager
def count_bytes() -> Iterator[ByteCount]:
    """Count, per kernel and argument, the bytes of every masked-in load, store and atomic."""
    from triton.runtime import interpreter

    builder = interpreter.interpreter_builder
    count = ByteCount()
    originals = {
        name: getattr(builder, name)
        for name in ("create_masked_load", "create_masked_store", "create_atomic_rmw", "create_atomic_cas")
    }

    def masked_load(ptrs, mask, other, cache_policy, is_volatile):
        count._record("load", ptrs, mask)
        return originals["create_masked_load"](ptrs, mask, other, cache_policy, is_volatile)

    def masked_store(ptrs, value, mask, cache_policy):
        count._record("store", ptrs, mask)
        return originals["create_masked_store"](ptrs, value, mask, cache_policy)

    def atomic_rmw(rmw_op, ptr, val, mask, sem, scope):
        count._record("atomic", ptr, mask)
        return originals["create_atomic_rmw"](rmw_op, ptr, val, mask, sem, scope)

    def atomic_cas(ptr, cmp, val, sem, scope):
        count._record("atomic", ptr, None)
        return originals["create_atomic_cas"](ptr, cmp, val, sem, scope)

    executor = interpreter.GridExecutor
    original_init_args = executor._init_args_hst

    def init_args(self, args_dev, kwargs):
        args_hst, kwargs_hst = original_init_args(self, args_dev, kwargs)
        bound = inspect.getcallargs(self.fn, *args_hst, **kwargs_hst)
        ranges = []
        for name, value in bound.items():  # in the kernel's argument order: the first owner wins
            if isinstance(value, torch.Tensor):
                start = value.untyped_storage().data_ptr()
                ranges.append((start, start + value.untyped_storage().nbytes(), name.removesuffix("_ptr")))
        count._kernel, count._ranges = self.fn.__name__, ranges
        count.launches[self.fn.__name__] += 1
        return args_hst, kwargs_hst

    for name, wrapper in (
        ("create_masked_load", masked_load),
        ("create_masked_store", masked_store),
        ("create_atomic_rmw", atomic_rmw),
        ("create_atomic_cas", atomic_cas),
    ):
        setattr(builder, name, wrapper)
    executor._init_args_hst = init_args
    try:
        yield count
    finally:
        for name in originals:
            delattr(builder, name)  # back to the class's methods
        executor._init_args_hst = original_init_args
