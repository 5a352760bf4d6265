"""The ratio tables: one per op, a row per case, every ratio taken side by side in one run.

A timed case is one entry (a dict, also one JSON line of MSGEN_BENCH_RESULTS):
    op          "part_warp", "fused_attention" or "train_step"
    case        e.g. "(10,64,128,64,10) fp32 F+B"
    impls       the implementations in table order; the first that ran is the base of the ratios
    medians_s   {impl: median seconds over the interleaved rounds} of those that ran
    not_run     {impl: why} for those listed but not run here (e.g. "GPU only")
    rounds, calls  the interleaved rounds, and the calls per round ({impl: n}, GPU)
    floor_s     optional: the bytes that must move / the measured copy bandwidth
    byte_model  optional: the kernel's design bytes over the floor's bytes ("1.23x")
    peak_bytes  optional: {impl: peak device memory of one call}
A row reads: each implementation's median in ms, each other implementation's median over the
base's (above 1: the base is faster), the base's median over the floor time.

``python benchmarks/tables.py results.jsonl ...`` prints the tables of results files, so a run
stopped at its time limit still gives the tables of the cases it finished (benchmarks/run_gpu.sh).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

OP_TITLES = {
    "part_warp": "part_warp (N, C, H, W, P)",
    "fused_attention": "fused_attention (B, M, Ce, Cd, H, W)",
    "train_step": "training step (generator + discriminator, both Adam steps)",
}


def base_impl(entry: dict) -> str | None:
    """The first implementation in table order that ran: the one the others are compared with."""
    return next((impl for impl in entry["impls"] if impl in entry["medians_s"]), None)


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f}" if seconds < 0.1 else f"{seconds * 1e3:.1f}"


def op_table(op: str, entries: list[dict]) -> list[str]:
    """Markdown lines of one op's table; its columns are the union of its entries' impls."""
    impls: list[str] = []
    for entry in entries:
        impls += [impl for impl in entry["impls"] if impl not in impls]
    bases = {base_impl(entry) for entry in entries} - {None}
    base = bases.pop() if len(bases) == 1 else None
    has_floor = any(entry.get("floor_s") for entry in entries)
    has_model = any(entry.get("byte_model") for entry in entries)
    ratio_names = [impl for impl in impls if impl != base] if base else []
    head = ["case", "rounds"] + [f"{impl} ms" for impl in impls]
    head += [f"{impl} / {base}" for impl in ratio_names]
    if not base:
        head += ["ratios"]
    if has_floor:
        head += [f"{base or 'base'} x floor", "floor ms"]
    if has_model:
        head += ["byte model"]
    lines = [f"\n#### {OP_TITLES.get(op, op)}\n", "| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for entry in entries:
        medians, not_run = entry["medians_s"], entry.get("not_run", {})
        row_base = base_impl(entry)
        cells = [entry["case"], str(entry.get("rounds", "-"))]
        for impl in impls:
            if impl in medians:
                cells.append(_ms(medians[impl]))
            else:
                cells.append(not_run.get(impl, "-"))
        if base:
            cells += [f"{medians[impl] / medians[base]:.2f}" if impl in medians and base in medians else "-"
                      for impl in ratio_names]
        else:
            cells.append(", ".join(f"{impl} / {row_base} {medians[impl] / medians[row_base]:.2f}"
                                   for impl in medians if impl != row_base) or "-")
        if has_floor:
            floor = entry.get("floor_s")
            cells += [f"{medians[row_base] / floor:.2f}", _ms(floor)] if floor and row_base else ["-", "-"]
        if has_model:
            cells.append(entry.get("byte_model") or "-")
        lines.append("| " + " | ".join(cells) + " |")
    notes = sorted({note for entry in entries for note in entry.get("notes", [])})
    lines += [f"\n{note}" for note in notes]
    return lines


def ratio_tables(entries: list[dict]) -> list[str]:
    """One table per op, ops in the order of their first entry."""
    by_op: dict[str, list[dict]] = {}
    for entry in entries:
        by_op.setdefault(entry["op"], []).append(entry)
    lines: list[str] = []
    for op, op_entries in by_op.items():
        lines += op_table(op, op_entries)
    return lines


def read_results(paths: list[Path]) -> list[dict]:
    """The entries of MSGEN_BENCH_RESULTS files; a line cut off by a killed run is left out."""
    entries = []
    for path in paths:
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            try:
                entries.append(json.loads(line))
            except ValueError:
                continue
    return entries


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Print the ratio tables of MSGEN_BENCH_RESULTS files.")
    parser.add_argument("results", nargs="+", type=Path, help="JSON-lines files written by the benchmarks")
    args = parser.parse_args(argv)
    entries = read_results(args.results)
    devices = sorted({entry.get("device", "?") for entry in entries})
    print(f"{len(entries)} case(s) measured on {', '.join(devices) or 'nothing'}")
    print("\n".join(ratio_tables(entries)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
