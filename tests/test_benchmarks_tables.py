"""The benchmarks' ratio tables (benchmarks/tables.py) and interleaved timer (benchmarks/timing.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import tables  # noqa: E402
from timing import Interleaved  # noqa: E402


def entry(case: str, medians: dict[str, float], **extra: object) -> dict:
    return {"op": "part_warp", "case": case, "impls": ["extension", "peer", "reference"],
            "medians_s": medians, "rounds": 5, **extra}


def table_rows(lines: list[str]) -> list[list[str]]:
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines if line.startswith("| ")]


def test_ratios_are_each_impl_over_the_base_and_the_floor_is_the_base_over_the_floor_time() -> None:
    lines = tables.op_table("part_warp", [entry("(10,64,128,64,10) fp32 F", {"extension": 0.02, "peer": 0.1,
                                                                           "reference": 0.13}, floor_s=0.004)])
    head, row = table_rows(lines)
    cells = dict(zip(head, row))
    assert cells["extension ms"] == "20.000" and cells["peer ms"] == "100.0"
    assert cells["peer / extension"] == "5.00" and cells["reference / extension"] == "6.50"
    assert cells["extension x floor"] == "5.00" and cells["floor ms"] == "4.000"
    assert "byte model" not in head  # a column only where some row has the number


def test_no_floor_column_without_a_floor_and_not_run_impls_say_why() -> None:
    step = {"op": "train_step", "case": "synthetic", "impls": ["fast", "reference"],
            "medians_s": {"fast": 0.1, "reference": 0.15}, "rounds": 15}
    fusion = {"op": "fused_attention", "case": "(2,5,32,32,128,64) fp32 F", "impls": ["triton", "compile", "reference"],
              "medians_s": {"compile": 0.01, "reference": 0.03}, "not_run": {"triton": "GPU only"}, "rounds": 7}
    lines = tables.ratio_tables([step, fusion])
    titles = [line for line in lines if line.startswith("\n#### ")]
    assert [t.split("(")[0].strip("\n# ") for t in titles] == ["training step", "fused_attention"]
    step_head = table_rows(lines)[0]
    assert not any("floor" in cell for cell in step_head)
    fusion_head, fusion_row = table_rows(lines)[2:4]
    cells = dict(zip(fusion_head, fusion_row))
    assert cells["triton ms"] == "GPU only"
    assert cells["reference / compile"] == "3.00"  # the base is the first impl that ran


def test_rows_with_other_impl_sets_are_compared_within_their_own_run() -> None:
    """run_gpu.sh times (triton, reference), later (triton, compile): each row keeps its own base."""
    rows = [{"op": "fused_attention", "case": "c F", "impls": ["triton", "reference"],
             "medians_s": {"triton": 1.0, "reference": 4.0}},
            {"op": "fused_attention", "case": "c F", "impls": ["triton", "compile"],
             "medians_s": {"triton": 2.0, "compile": 5.0}}]
    head, first, second = table_rows(tables.op_table("fused_attention", rows))
    assert dict(zip(head, first))["reference / triton"] == "4.00"
    assert dict(zip(head, second))["compile / triton"] == "2.50"
    assert dict(zip(head, second))["reference ms"] == "-"


def test_results_file_with_a_cut_off_line_still_gives_the_tables(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps(entry("a", {"extension": 0.01, "peer": 0.05}, device="dev")) + "\n{\"op\": \"par")
    result = subprocess.run([sys.executable, str(BENCHMARKS / "tables.py"), str(path)], capture_output=True,
                            text=True, check=True)
    assert result.stdout.startswith("1 case(s) measured on dev")
    assert "| a | 5 | 10.000 | 50.000 | - | 5.00 | - |" in result.stdout


class FakeBenchmark:
    enabled = True

    def __init__(self) -> None:
        self.rounds = 0

    def pedantic(self, target, rounds: int, warmup_rounds: int, iterations: int) -> None:
        for _ in range(rounds):
            target()
            self.rounds += 1


def test_interleaved_rounds_alternate_the_order_and_take_medians() -> None:
    calls: list[str] = []
    timer = Interleaved({name: (lambda name=name: calls.append(name)) for name in "ABC"}, torch.device("cpu"))
    medians = timer.run(FakeBenchmark(), rounds=4)
    assert calls[:3] == list("ABC")  # the warm-up
    assert calls[3:] == list("ABC" "CBA" "ABC" "CBA")
    assert set(medians) == set("ABC") and all(len(times) == 4 for times in timer.times.values())


@pytest.mark.cuda
def test_gpu_rounds_make_enough_calls_of_a_short_kernel() -> None:
    x = torch.ones(1 << 20, device="cuda")
    timer = Interleaved({"add": lambda: x.add_(1)}, torch.device("cuda"))
    timer.run(FakeBenchmark(), rounds=2)
    assert timer.calls["add"] > 1 and len(timer.times["add"]) == 2 * timer.calls["add"]
