"""Scriptorium: the shared domain of the OCR fleet (no web framework, no torch)."""

__version__ = "0.1.0"
