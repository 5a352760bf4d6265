"""Every code block of README.md runs as written, so the README cannot drift from the code.

A block is run unless the line before it marks it: ``<!-- template: why -->`` for a block whose
names stand for the user's own files (CKPT, a.jpg, a GPU machine), and the quick-start block
between the ``ci:quickstart`` markers, which .ci/run runs itself on a fresh clone. Bash blocks run
under ``bash -euo pipefail`` with this interpreter's ``python`` first on PATH, Python blocks in a
fresh interpreter; each in a temporary folder holding links to the repository's examples/ and docs/,
so the relative paths of the README resolve as from the repository root while every output lands
in the temporary folder (and the repository is checked to be left unchanged).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
FENCE = re.compile(r"^```(?P<lang>\w*)\n(?P<code>.*?)^```\s*$", re.M | re.S)
LINKED = ("examples", "docs")  # what the blocks read, relative to the repository root


@dataclass(frozen=True)
class Block:
    line: int
    lang: str
    code: str
    kind: str  # "run", "template" or "quickstart"


def readme_blocks(text: str) -> list[Block]:
    blocks = []
    for match in FENCE.finditer(text):
        before = [line.strip() for line in text[: match.start()].splitlines() if line.strip()]
        marker = before[-1] if before else ""
        kind = ("template" if marker.startswith("<!-- template") else
                "quickstart" if marker == "<!-- ci:quickstart -->" else "run")
        blocks.append(Block(text[: match.start()].count("\n") + 1, match["lang"], match["code"], kind))
    return blocks


BLOCKS = readme_blocks(README.read_text())
RUN = [b for b in BLOCKS if b.kind == "run"]


def test_the_readme_blocks_are_runnable_or_marked():
    assert [b.kind for b in BLOCKS].count("quickstart") == 1
    quickstart = next(b for b in BLOCKS if b.kind == "quickstart")
    assert len([line for line in quickstart.code.splitlines() if re.match(r"(pip|python) ", line)]) == 3
    for block in RUN:
        assert block.lang in ("bash", "python"), f"README.md:{block.line}: a ```{block.lang} block cannot be run"
        # A literal "..." stands for something left out: a block that runs has nothing left out.
        assert not re.search(r"(^|\s)\.\.\.(\s|$)", block.code), f"README.md:{block.line} holds a literal '...'"
    # The generate line, the Python API and the ops in another generator, at least.
    assert sum("msgen.generate" in b.code for b in RUN) >= 1
    assert sum("from msgen.api import" in b.code for b in RUN) >= 1
    assert sum("msgen.ops.part_warp" in b.code and "AttentionFusion" in b.code for b in RUN) >= 1


def _snapshot() -> dict[str, float]:
    return {str(p): p.stat().st_mtime for name in LINKED for p in (REPO / name).rglob("*")}


@pytest.mark.slow
@pytest.mark.parametrize("block", RUN, ids=[f"README.md:{b.line}" for b in RUN])
def test_readme_block_runs(block: Block, tmp_path: Path):
    for name in LINKED:
        (tmp_path / name).symlink_to(REPO / name, target_is_directory=True)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    command = (["bash", "-euo", "pipefail", "-c", block.code] if block.lang == "bash"
               else [sys.executable, "-c", block.code])
    before = _snapshot()
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"README.md:{block.line} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    assert _snapshot() == before, f"README.md:{block.line} wrote into the repository's {LINKED}"
    if "msgen.generate" in block.code:
        assert (tmp_path / "runs" / "generated" / "generated.png").is_file()
        assert (tmp_path / "runs" / "generated" / "figure.png").is_file()
