"""Enterprise's calls into plugin code (fusion methods, compressors) use core's boundary rule:
:mod:`deepseek.plugins.calls`."""

from deepseek.plugins.calls import blamed_on

__all__ = ["blamed_on"]
