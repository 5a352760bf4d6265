"""Every document the code cites exists in the repository, and every section it names by title is a
heading there: docstrings and comments that say "METHOD.md, "Generator G"" lead somewhere."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("msgen", "kernels", "csrc", "benchmarks", "tests", ".ci")
SUFFIXES = {".py", ".cpp", ".h", ".cu", ".cuh", ".sh", ""}
# Names that are outputs the code writes, not documents it cites.
OUTPUTS = {"evaluation.md", "tables.md"}
CITATION = re.compile(r"(?<![\w/.-])((?:[\w-]+/)*[\w-]+\.md)\b(?:'s)?(?:,\s*\"([^\"]+)\")?")


def documents() -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for path in REPO.rglob("*.md"):
        if not {".venv", ".ci-out", "node_modules"} & set(path.relative_to(REPO).parts):
            found.setdefault(path.name, []).append(path)
    return found


def headings(path: Path) -> set[str]:
    return {line.lstrip("#").strip() for line in path.read_text().splitlines() if line.startswith("#")}


def test_cited_documents_and_sections_exist():
    docs, problems = documents(), []
    for folder in SOURCES:
        for path in sorted((REPO / folder).rglob("*")):
            if not path.is_file() or path.suffix not in SUFFIXES or path.name == Path(__file__).name:
                continue
            try:
                text = path.read_text()
            except UnicodeDecodeError:
                continue
            for number, line in enumerate(text.splitlines(), 1):
                for match in CITATION.finditer(line):
                    cited, section = match[1], match[2]
                    if Path(cited).name in OUTPUTS:
                        continue
                    where = f"{path.relative_to(REPO)}:{number}"
                    # A path from the repository's root, else a bare name that one document bears.
                    targets = [REPO / cited] if (REPO / cited).is_file() or "/" in cited else docs.get(cited, [])
                    targets = [t for t in targets if t.is_file()]
                    if len(targets) != 1:
                        problems.append(f"{where}: {cited} is {'not in the repository' if not targets else 'ambiguous'}")
                    elif section is not None and section not in headings(targets[0]):
                        problems.append(f"{where}: {cited} has no section {section!r}")
    assert not problems, "\n".join(problems)
