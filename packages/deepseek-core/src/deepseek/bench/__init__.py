"""deepseek.bench."""
