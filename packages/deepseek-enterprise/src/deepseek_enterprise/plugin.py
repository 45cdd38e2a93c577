"""deepseek-enterprise's entry-point plugin. Its features arrive in later issues; for now it
declares its identity and adds its own hookspecs (compressors and tuners)."""

import pluggy

from deepseek.hookspecs import hookimpl


@hookimpl
def deepseek_add_hookspecs(pluginmanager: pluggy.PluginManager) -> None:
    """Add the enterprise hookspecs (compressors, tuners)."""
    from deepseek_enterprise import hookspecs

    pluginmanager.add_hookspecs(hookspecs)
