"""Weights in and out: convert, predict, export, evaluate a checkpoint, and the inference fast path."""
