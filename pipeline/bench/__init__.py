"""Benchmarks (commands of the CLI, outside every stage's import closure)."""
