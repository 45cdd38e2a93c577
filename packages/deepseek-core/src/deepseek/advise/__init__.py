"""deepseek.advise."""
