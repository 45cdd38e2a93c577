"""tests/ecosystem: deepseek-core with its optional ecosystem extras installed (the nox session
``tests-ecosystem``): Hugging Face tokenizers/datasets/transformers, MLflow, W&B, TensorBoard."""
