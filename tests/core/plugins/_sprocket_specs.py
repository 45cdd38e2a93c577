"""The hookspecs of a throwaway extension, shared by the tests of hookspecs plugins add
(test_host_own_hookspecs_later.py, test_host_own_hookspecs_removal.py, whose throwaway distributions
import it too: the tests' folder is on sys.path): a registration hook
(kind ``sprocket``) and a plain one, and the plugin that adds them. Core only: no edition needed."""

from __future__ import annotations

from deepseek import hookimpl
from deepseek.hookspecs import hookspec


class Sprockets:
    @staticmethod
    @hookspec
    def deepseek_register_sprockets(register):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN205
        """Register sprockets."""

    @staticmethod
    @hookspec
    def deepseek_sprocket_made(sprocket):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN205
        """A plain hook of the extension."""


class SprocketSpecs:
    """Adds :class:`Sprockets` and registers the sprocket ``ext.sprocket`` through them."""

    @hookimpl
    def deepseek_add_hookspecs(self, pluginmanager):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
        pluginmanager.add_hookspecs(Sprockets)

    @hookimpl
    def deepseek_register_sprockets(self, register):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
        register("ext.sprocket", dict, description="the extension's own")
