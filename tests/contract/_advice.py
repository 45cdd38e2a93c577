"""Who a contract test's skip reason speaks to: the advice that ends one (``register ... in the
same plugin``) is for the author of the component it names, a plugin's; a first-party edition's
component (:data:`deepseek.plugins.catalogue.EDITIONS`) is in the suite only because that edition is
installed next to the plugin under test, whose author can do nothing about it."""

from __future__ import annotations

from deepseek.plugins.catalogue import EDITIONS
from deepseek.plugins.records import Component


def advice_for(component: Component, fix: str) -> str:
    """``fix`` (what the component's author does about the skip) where ``component`` is a
    plugin's; for a first-party edition's, that it is no fault of the plugin under test."""
    if component.dist not in EDITIONS:
        return fix
    return (f"it is {component.dist}'s own ({EDITIONS[component.dist]}), not the plugin's under test: nothing here "
            "for a plugin author to do")
