"""The project's seed gold: its YAML files, and predictions scored against them."""
