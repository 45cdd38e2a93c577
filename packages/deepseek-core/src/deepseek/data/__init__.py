"""deepseek.data."""
