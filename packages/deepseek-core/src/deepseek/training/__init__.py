"""deepseek.training."""
