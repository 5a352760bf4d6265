"""The exceptions msgen's command-line tools turn into one line and an exit code.

``UsageError`` is bad input from the user (an argument, a file, a configuration that cannot run
here): the tools print ``error: <message>`` and exit with status 2, before any output is written.
Its message names the argument or file and what was expected.
"""

from __future__ import annotations


class UsageError(ValueError):
    """Bad input: the message names the argument or file and what was expected."""
