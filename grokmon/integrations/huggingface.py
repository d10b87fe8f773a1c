"""grokmon in a Hugging Face Trainer: a `TrainerCallback` that measures the model as it trains.

    trainer = Trainer(model, args, train_dataset=..., callbacks=[GrokmonCallback("probes.safetensors")])

The model is measured through its `forward` (called with the probe inputs as its first argument), in eval
mode, on its device, at every checkpoint save (`every_n_steps=None`) or every N optimiser steps. The rows go to
`grokmon.parquet` in `args.output_dir`, where `grokmon analyze` of that folder writes and resumes them; the
values go to the Trainer's log history (`trainer.state.log_history`, and so every later checkpoint's
`trainer_state.json`) as `grokmon/<split>/<metric>`. A callback cannot call `Trainer.log`, so the reporters of
`report_to` (TensorBoard, W&B, ...) do not see them. The world's process zero measures; `stop_on` stops a
single-process run (a stop decided there would not reach the other processes).
"""

from __future__ import annotations

import logging
from pathlib import Path

from transformers import TrainerCallback

from .monitor import MonitorCallback


class GrokmonCallback(MonitorCallback, TrainerCallback):
    """Measure the live model at every checkpoint save or every `every_n_steps` optimiser steps (the arguments:
    `grokmon.integrations.monitor.MonitorCallback`; by default the rows go to grokmon.parquet in `output_dir`)."""

    log = logging.getLogger("transformers.integrations.grokmon")  # under the transformers verbosity setting

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if state.is_world_process_zero:
            self.monitor.open(model, Path(args.output_dir))

    def on_step_end(self, args, state, control, **kwargs):
        if self.monitor.every_n_steps is not None:
            self._measure(state, control, saving=False)

    def on_save(self, args, state, control, **kwargs):
        if self.monitor.every_n_steps is None:
            self._measure(state, control, saving=True)

    def on_train_end(self, args, state, control, **kwargs):
        self.monitor.finish()

    def _measure(self, state, control, saving: bool) -> None:
        step = state.global_step
        if not self.monitor.due(step, saving):
            return
        result = self.monitor.measure(step)
        entry = dict(result.logged)
        if result.stop is not None:
            entry["grokmon/stop"] = result.stop
            control.should_training_stop = True
        if entry:
            state.log_history.append({**entry, "epoch": state.epoch, "step": step})
