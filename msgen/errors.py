"""The exceptions msgen's command-line tools turn into one line and an exit code.

``UsageError`` is bad input from the user (an argument, a file, a configuration that cannot run
here): the tools print ``error: <message>`` and exit with status 2, before any output is written.
Its message names the argument or file and what was expected. ``CommandLineParser`` gives argparse's
own errors (an unknown option, a bad value) the same one-line form.
"""

from __future__ import annotations

import argparse
from typing import NoReturn


class UsageError(ValueError):
    """Bad input: the message names the argument or file and what was expected."""


class CommandLineParser(argparse.ArgumentParser):
    """argparse with msgen's one error style: a bad option is one line ``error: ...`` on stderr and
    exit status 2, the same as a UsageError, instead of argparse's usage block and ``prog: error:``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} ({self.prog} --help lists the options)\n")
