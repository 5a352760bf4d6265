"""``python -m msgen.pose [TOOL [ARGS...]]``: the pose tools, listed or run.

Without a tool (or with -h) it lists them; ``python -m msgen.pose TOOL ARGS...`` is the same as
``python -m msgen.pose.TOOL ARGS...``.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

# Tool name -> what it does (each is msgen.pose.<name> with a main(argv)).
TOOLS = {
    "annotate": "detect the 18 keypoints in photos and write an annotation CSV (needs the pose extra), "
                "or measure the detector against annotations (--evaluate DIR)",
    "draw": "draw an image's pose, and a target's pose, part masks and part warp, from an annotation CSV",
}  # fmt: skip


def usage() -> str:
    width = max(map(len, TOOLS))
    lines = ["usage: python -m msgen.pose TOOL [ARGS...]   (python -m msgen.pose TOOL -h for its options)", "", "tools:"]
    lines += [f"  {name:<{width}}  {text}" for name, text in TOOLS.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    tool, rest = argv[0], argv[1:]
    if tool not in TOOLS:
        print(f"error: TOOL must be one of {', '.join(TOOLS)}, got {tool!r}\n\n{usage()}", file=sys.stderr)
        return 2
    code = importlib.import_module(f"msgen.pose.{tool}").main(rest)
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
