"""Checkpoints: the file format (safe reads, atomic writes), the typed view every reader uses, foreign state_dicts."""

from resnet.checkpoint.storage import FORMAT, load_file, save_checkpoint
from resnet.checkpoint.typed import TRAINING_KEYS, Checkpoint, load_checkpoint, with_bn_counters

__all__ = [
    "FORMAT",
    "TRAINING_KEYS",
    "Checkpoint",
    "load_checkpoint",
    "load_file",
    "save_checkpoint",
    "with_bn_counters",
]
