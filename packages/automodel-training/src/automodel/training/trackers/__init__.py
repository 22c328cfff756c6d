"""Experiment trackers for the ``logging:`` section: Weights & Biases, MLflow, TensorBoard and trackio.

Each library is imported only when its tracker is configured (the extras
``automodel-training[wandb|mlflow|tensorboard|trackio]``).
"""

from automodel.training.trackers.build import MISPLACED_TRACKERS, TRACKERS, Trackers, build_trackers
from automodel.training.trackers.mlflow_tracker import MlflowTracker
from automodel.training.trackers.tensorboard_tracker import TensorBoardTracker
from automodel.training.trackers.trackio_tracker import TrackioTracker
from automodel.training.trackers.wandb_tracker import WandbTracker

__all__ = [
    "MISPLACED_TRACKERS",
    "TRACKERS",
    "MlflowTracker",
    "TensorBoardTracker",
    "Trackers",
    "TrackioTracker",
    "WandbTracker",
    "build_trackers",
]
