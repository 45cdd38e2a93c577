"""The deepseek command line."""
