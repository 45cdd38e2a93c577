"""deepseek.optimize."""
