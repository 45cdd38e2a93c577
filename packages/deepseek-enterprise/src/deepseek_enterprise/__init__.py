"""DeepSeek framework, enterprise edition: multimodal encoders, fusion, compression, tuning."""

__version__ = "0.1.0"
