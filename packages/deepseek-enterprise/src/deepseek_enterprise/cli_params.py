"""Click parameter types of the enterprise commands, built on core's (:mod:`deepseek.cli.params`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from deepseek.cli.params import PathText


class PathArg(PathText):
    """Core's path type (an empty or blank path is refused, naming the option) as a
    :class:`pathlib.Path`."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Path:
        return Path(super().convert(value, param, ctx))


PATH_ARG = PathArg()
"""The type of every enterprise option or argument naming a file or folder that the command
takes as a :class:`pathlib.Path` (those taken as text use core's ``PATH``)."""
