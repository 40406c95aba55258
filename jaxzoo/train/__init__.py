"""Training: the train state and optimizer, the sharded train/eval steps, checkpoints, the loop."""
from jaxzoo.train.loop import TrainingDiverged, TrainingInterrupted, train_and_evaluate
from jaxzoo.train.state import TrainState, create_optimizer, create_train_state, trainable_mask
from jaxzoo.train.step import (make_eval_step, make_mesh, make_train_step,
                               make_train_step_for_config, shard_batch)

__all__ = ["TrainState", "TrainingDiverged", "TrainingInterrupted", "create_optimizer",
           "create_train_state", "make_eval_step", "make_mesh", "make_train_step",
           "make_train_step_for_config", "shard_batch", "train_and_evaluate", "trainable_mask"]
