"""Evaluation: errors as the paper reports them, its test views and protocols, on arrays and image folders."""
