"""Calls into a component's code at the boundary where the framework hands over to it (a
schedule's ``lr_at``, a dataset's ``__next__``, enterprise's fusion ``forward`` and compressor
``compress``): what it raises comes out as one line naming the component and its distribution.

deepseek's own one-line errors (:class:`~deepseek.errors.DeepseekError`: a refusal the plugin
raised on purpose, or a check of ours inside) and running out of memory pass through as they
are; anything else is a bug in the plugin and becomes a :class:`~deepseek.errors.PluginError`
(exit code 1, as for a plugin that fails to load or registers something invalid).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from deepseek.errors import DeepseekError, PluginError


def component_label(kind: str, name: str, component: object) -> str:
    """``<kind> <name> (<distribution> <version>)`` of a resolved component
    (:class:`~deepseek.plugins.records.Component`)."""
    return f"{kind} {name} ({component.dist} {component.version})"  # type: ignore[attr-defined]


@contextlib.contextmanager
def blamed_on(label: str, call: str) -> Iterator[None]:
    """Run the block; an exception it raises (see the module docstring) becomes a one-line
    :class:`PluginError`: ``<label>: <call> raised <Type>: <message>; ...``."""
    try:
        yield
    except DeepseekError:
        raise
    except Exception as exc:
        from deepseek.cli.main import out_of_memory
        from deepseek.plugins.records import describe_error

        if out_of_memory(exc):
            raise
        raise PluginError(f"{label}: {call} raised {describe_error(exc)}; a bug in the plugin: upgrade it or report "
                          "it to its authors (--debug shows the traceback)") from exc
