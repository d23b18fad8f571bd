"""Annotation-and-dataset pipeline for geopolitical news."""

__version__ = "0.1.0"
