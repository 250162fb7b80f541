"""Training: the loop (``fit``), its schedule, state, meters, runtime, run directory, signals and console."""
