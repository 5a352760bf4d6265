"""Every option of every command-line tool says what it does, its unit or allowed values, and its
default: a help text of its own besides "(default: X)" (issue 17, "--help explains every option").

The parsers are captured as each tool's ``main`` builds them (``ArgumentParser.parse_args`` is
intercepted), so the test sees exactly the options a user sees, with no text parsing of --help.
"""

from __future__ import annotations

import argparse
import importlib
import re

import pytest

# (what a user types, the module whose main() builds the parser)
TOOLS = {
    "python -m msgen.train": "msgen.training.cli",
    "python -m msgen.evaluate": "msgen.evaluate",
    "python -m msgen.generate": "msgen.generate",
    "python -m msgen.data.prepare": "msgen.data.prepare",
    "python -m msgen.data.synthetic": "msgen.data.synthetic",
    "python -m msgen.pose.annotate": "msgen.pose.annotate",
    "python -m msgen.pose.draw": "msgen.pose.draw",
}
_DEFAULT = re.compile(r"\(default: [^)]*\)")


class _Captured(Exception):
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser


def captured_parser(module_name: str, monkeypatch: pytest.MonkeyPatch) -> argparse.ArgumentParser:
    """The parser ``module.main([])`` builds, taken at its parse_args call."""
    def capture(self, *args, **kwargs):
        raise _Captured(self)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", capture)
    module = importlib.import_module(module_name)
    with pytest.raises(_Captured) as caught:
        module.main([])
    return caught.value.parser


def _name(action: argparse.Action) -> str:
    return max(action.option_strings, key=len) if action.option_strings else action.dest


def problems(parser: argparse.ArgumentParser) -> list[str]:
    """One line per option whose help does not explain it."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        text = action.help or ""
        if text == argparse.SUPPRESS:
            continue
        own = _DEFAULT.sub("", text.replace("%(default)s", "X")).strip(" ;,.")
        if len(re.findall(r"[A-Za-z]{2,}", own)) < 3:
            found.append(f"{_name(action)}: no help beyond its default: {text!r}")
        elif action.option_strings and not action.required and not ("default" in text or "required" in text):
            found.append(f"{_name(action)}: the help does not state the default: {text!r}")
    return found


@pytest.mark.parametrize("tool", list(TOOLS))
def test_every_option_has_a_help_text_with_its_default(tool, monkeypatch):
    parser = captured_parser(TOOLS[tool], monkeypatch)
    assert len(parser._actions) > 1
    bad = problems(parser)
    assert not bad, f"{tool}: {len(bad)} option(s) without an explaining help:\n" + "\n".join(bad)


def test_train_help_comes_from_the_config_fields():
    # One source: the dataclass field's metadata is the option's help.
    import dataclasses

    from msgen.models.config import LossConfig
    from msgen.training.cli import build_parser
    from msgen.training.config import TrainConfig

    actions = {a.dest: a for a in build_parser()._actions}
    for path, cls, name in (("steps", TrainConfig, "steps"), ("model.loss.lambda_nn", LossConfig, "lambda_nn")):
        metadata = next(f for f in dataclasses.fields(cls) if f.name == name).metadata["help"]
        assert actions[path].help.startswith(metadata.replace("%", "%%"))


def test_the_checker_catches_a_bare_default():
    parser = argparse.ArgumentParser()
    parser.add_argument("--width", type=float, default=1.0, help="(default: 1.0)")
    parser.add_argument("--height", type=int, default=3, help="rows of the output grid, >= 1")
    parser.add_argument("--out", required=True, help="output folder for the images (required)")
    assert [line.split(":")[0] for line in problems(parser)] == ["--width", "--height"]
