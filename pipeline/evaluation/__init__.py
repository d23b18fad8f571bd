"""Evaluation tools: scoring functions, the seed gold, the SEESAW benchmark, the speed benchmark."""
