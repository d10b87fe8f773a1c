"""grokmon in a Hugging Face Trainer: a `TrainerCallback` that measures the model as it trains.

    trainer = Trainer(model, args, train_dataset=..., callbacks=[GrokmonCallback("probes.safetensors")])
    GrokmonCallback.attach(trainer, "probes.safetensors")    # the same, and the values reach `report_to` too

The model is measured through its `forward` (called with the probe inputs as its first argument), in eval
mode, on its device, before the first step (a run that starts from step 0) and at every checkpoint save
(`every_n_steps=None`) or every N optimiser steps. The rows go to
`grokmon.parquet` in `args.output_dir`, where `grokmon analyze` of that folder writes and resumes them; the
values go to the Trainer's log history (`trainer.state.log_history`, and so every later checkpoint's
`trainer_state.json`) as `grokmon/<split>/<metric>`. A callback is not handed the Trainer, so only one made with
`attach(trainer, ...)` logs through `Trainer.log`, which the reporters of `report_to` (TensorBoard, W&B, MLflow,
...) receive as well; the console's printer then shows a summary line (accuracy, phase, verdict), not all ~50
values. The world's process zero measures; `stop_on` stops a
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
    trainer = None  # set by `attach`: the values are then logged through it

    @classmethod
    def attach(cls, trainer, probes, **options) -> "GrokmonCallback":
        """Make the callback (arguments as for the class), add it to `trainer`, and log through `trainer.log`,
        so that the reporters of `report_to` receive the values as well as the log history."""
        callback = cls(probes, **options)
        callback.trainer = trainer
        trainer.add_callback(callback)
        return callback

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if state.is_world_process_zero:
            self.monitor.open(model, Path(args.output_dir))
            start = self.monitor.measure_start(state.global_step)
            if start is not None:
                self._log(start, state)

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
        if result.stop is not None:
            control.should_training_stop = True
        self._log(result, state)

    def _log(self, result, state) -> None:
        entry = dict(result.logged)
        if result.stop is not None:
            entry["grokmon/stop"] = result.stop
        if entry and self.trainer is not None:
            self._log_through_trainer(entry, console_summary(entry, result))
        elif entry:
            state.log_history.append({**entry, "epoch": state.epoch, "step": result.step})

    def _log_through_trainer(self, entry: dict, summary: dict) -> None:
        """`trainer.log(entry)`, the log history and every reporter's on_log, with the console's printers (the
        progress bar's, or PrinterCallback's under disable_tqdm) set aside for the call: they print every key, some
        50 per measurement. They print `summary` instead."""
        from transformers.trainer_callback import PrinterCallback, ProgressCallback

        trainer = self.trainer
        callbacks = trainer.callback_handler.callbacks
        printers = [(i, cb) for i, cb in enumerate(callbacks) if isinstance(cb, (PrinterCallback, ProgressCallback))]
        for _, printer in printers:
            callbacks.remove(printer)
        try:
            trainer.log(entry)
        finally:
            for i, printer in printers:
                callbacks.insert(i, printer)
        for _, printer in printers:
            printer.on_log(trainer.args, trainer.state, trainer.control, logs=dict(summary))


def console_summary(entry: dict, result) -> dict:
    """What the console shows of one measurement: accuracy per split, the phase and the verdict in words.

    >>> console_summary({"grokmon/train/accuracy": 1.0, "grokmon/test/lc": 3.0, "grokmon/seconds": 0.5}, None)
    {'grokmon/train/accuracy': 1.0, 'grokmon/seconds': 0.5}
    """
    summary = {k: v for k, v in entry.items() if k.endswith("/accuracy") or k in ("grokmon/seconds", "grokmon/stop")}
    report = getattr(result, "report", None)
    if report is not None:
        summary.update({"grokmon/phase": report.current_phase or "none", "grokmon/advice": report.advice,
                        "grokmon/confidence": round(float(report.confidence), 2)})
    return summary
