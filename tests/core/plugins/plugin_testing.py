"""Helpers for plugin-host tests.

Throwaway plugin distributions are a real ``NAME-VERSION.dist-info`` (METADATA with
Requires-Dist, entry_points.txt) plus their modules, in a temp folder on ``sys.path``, so
importlib.metadata finds them exactly as it finds an installed plugin.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings


class DistFactory:
    """Writes throwaway distributions into one folder that is on ``sys.path``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.modules: set[str] = set()

    def __call__(
        self,
        name: str,
        modules: Mapping[str, str],
        *,
        entry_points: Mapping[str, str] | None = None,
        version: str = "0.1.0",
        requires: Sequence[str] = (),
    ) -> str:
        """Create distribution ``name``; ``modules`` maps module name -> source.

        ``entry_points`` defaults to one entry point per module (named after its last part).
        Returns the distribution name.
        """
        for module, source in modules.items():
            path = self.root.joinpath(*module.split(".")).with_suffix(".py")
            path.parent.mkdir(parents=True, exist_ok=True)
            for parent in path.relative_to(self.root).parents:
                if str(parent) != ".":
                    (self.root / parent / "__init__.py").touch()
            path.write_text(textwrap.dedent(source))
            self.modules.add(module)
            self.modules.add(module.split(".")[0])
        info = self.root / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
        lines += [f"Requires-Dist: {r}" for r in requires]
        (info / "METADATA").write_text("\n".join(lines) + "\n")
        eps = entry_points if entry_points is not None else {m.split(".")[-1]: m for m in modules}
        body = "".join(f"{k} = {v}\n" for k, v in eps.items())
        (info / "entry_points.txt").write_text(f"[deepseek]\n{body}")
        importlib.invalidate_caches()
        return name

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for a subprocess that sees these distributions."""
        env = base_env()
        env["PYTHONPATH"] = os.pathsep.join([str(self.root), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        env.update(extra)
        return env


def host_for(*dists: str, **settings: object) -> PluginHost:
    """A fresh host loading core's built-ins plus exactly ``dists`` (installed editions are off)."""
    allow = settings.pop("allow", frozenset(dists))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return PluginHost(PluginSettings(allow=allow, **settings))  # type: ignore[arg-type]


def base_env(**extra: str) -> dict[str, str]:
    """This process's environment without DEEPSEEK_* variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEEPSEEK_")}
    env.update(extra)
    return env


def run_cli(
    *args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None, importtime: bool = False
) -> subprocess.CompletedProcess[str]:
    """``python -m deepseek ARGS`` in a subprocess (``-X importtime`` on request)."""
    flags = ["-X", "importtime"] if importtime else []
    return subprocess.run(
        [sys.executable, *flags, "-m", "deepseek", *args],
        capture_output=True, text=True, env=dict(base_env() if env is None else env), cwd=cwd,
        timeout=120,
    )


PASS_PLUGIN = """
from deepseek import hookimpl

@hookimpl
def deepseek_register_passes(register):
    register({name!r}, "{module}:make", description="a throwaway pass")

def make():
    return {name!r}
"""
"""A plugin registering one pass; format with ``name`` and ``module``."""
