"""Helox: raw text, code and JSONL to a pretrained and instruction-tuned language model."""

__version__ = "0.1.0"
