"""deepseek-pro's parallelism strategies. Each module is imported only when its strategy is
created (see :mod:`deepseek_pro.plugin`)."""
