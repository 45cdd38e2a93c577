"""DeepSeek framework, professional edition: distributed training as plugins of deepseek-core."""

__version__ = "0.1.0"
