"""The training engine: the Trainer (the GAN step), checkpoints, evaluation and runs."""

from .run import Run, train
from .trainer import Trainer

__all__ = ["Run", "Trainer", "train"]
