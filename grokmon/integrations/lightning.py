"""grokmon in a Lightning training loop: a `Callback` that measures the LightningModule as it trains.

    trainer = Trainer(callbacks=[GrokmonCallback("probes.safetensors", stop_on="stop")])

The module is measured through its `forward` (which must take the probe inputs), in eval mode, on its device,
before the first step (a run that starts from step 0) and at every checkpoint save (`every_n_steps=None`) or
every N optimiser steps. The rows go to `grokmon.parquet` in the folder of the run's checkpoints
(`trainer.checkpoint_callback.dirpath`, else `default_root_dir`), where `grokmon analyze` of that folder writes
and resumes them; the values go to every logger of the trainer as `grokmon/<split>/<metric>`. Only global rank 0
measures; a stop it decides reaches every rank.
"""

from __future__ import annotations

import logging
from pathlib import Path

from lightning.pytorch import Callback

from .monitor import MonitorCallback


def run_folder(trainer) -> Path:
    """Where the run's checkpoints go: the first ModelCheckpoint's folder, else the trainer's root folder."""
    checkpoints = trainer.checkpoint_callback
    if checkpoints is not None and getattr(checkpoints, "dirpath", None):
        return Path(checkpoints.dirpath)
    return Path(trainer.default_root_dir)


class GrokmonCallback(MonitorCallback, Callback):
    """Measure the live LightningModule at every checkpoint save or every `every_n_steps` optimiser steps (the
    arguments: `grokmon.integrations.monitor.MonitorCallback`; by default the rows go to grokmon.parquet in
    the ModelCheckpoint's folder, else `default_root_dir`)."""

    log = logging.getLogger("lightning.pytorch.callbacks.grokmon")  # shown by Lightning's console handler

    def on_train_start(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            self.monitor.open(pl_module, run_folder(trainer))
            start = self.monitor.measure_start(trainer.global_step)
            if start is not None:
                _log(trainer, start)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.monitor.every_n_steps is not None:
            self._measure(trainer, saving=False)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        if self.monitor.every_n_steps is None:
            self._measure(trainer, saving=True)

    def on_train_end(self, trainer, pl_module) -> None:
        self.monitor.finish()

    def _measure(self, trainer, saving: bool) -> None:
        step = trainer.global_step
        if not self.monitor.is_measure_step(step, saving):
            return  # not a step to measure on any rank: no collective call either
        stop = False
        if self.monitor.due(step, saving):
            result = self.monitor.measure(step)
            _log(trainer, result)
            stop = result.stop is not None
        if trainer.strategy.reduce_boolean_decision(stop, all=False):
            trainer.should_stop = True


def _log(trainer, result) -> None:
    """A measurement's values to every logger of the trainer, at its step."""
    for logger in trainer.loggers if result.logged else ():
        logger.log_metrics(result.logged, step=result.step)
