"""deepseek-tidy: an example third-party plugin built only on the public hookspecs."""

__version__ = "0.1.0"
