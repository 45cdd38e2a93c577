"""deepseek.models."""
