"""Training of the multi-source generator: ``python -m msgen.train`` (see ``msgen.training.cli``).

- ``config``: TrainConfig (model + data + optimisation), presets, dict round trips for checkpoints;
- ``cli``: the command line generated from TrainConfig's fields;
- ``loop``: ``train(config, resume=..., init_from=...)``; ``step``: the D and G steps of one batch;
- ``augment``: the tuples' flips and colour jitter (``--data.flip``, ``--data.color-jitter``);
- ``sampler``: the data order as a function of the step (exact resume, torchrun sharding);
- ``data``: the synthetic cache, identity split and tuples of a run;
- ``visuals``, ``monitor``: sample grids, progress bar and logs (the periodic evaluation is
  ``msgen.evaluation.evaluate``);
- ``distributed``: torchrun process groups (NCCL on GPU, gloo on CPU).
"""

from msgen.training.config import DataConfig, TrainConfig, config_from_dict, config_to_dict, train_preset

__all__ = ["DataConfig", "TrainConfig", "config_from_dict", "config_to_dict", "train_preset"]
