"""Typed, validated configuration (TOML)."""
