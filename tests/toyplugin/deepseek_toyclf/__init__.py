"""deepseek-toyclf: a classifier and a blob dataset, registered as a third party would."""
