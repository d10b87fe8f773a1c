"""A model file for `--model tests/tripwire_model.py:build`: the tiny MLP of conftest, slowed down on request,
whose process dies when it runs weights marked to kill it: a stand-in for a worker lost to a crash or to the
out-of-memory killer. `kill` = 1: die unless `marker` exists (creating it), so the retry succeeds; 2: always."""

import os
import time
from pathlib import Path

import torch
from torch import nn


class Tripwire(nn.Module):
    def __init__(self, marker: str, delay: float):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
        self.register_buffer("kill", torch.zeros(()))
        self.marker, self.delay = Path(marker), delay

    def forward(self, x):
        kill = float(self.kill)
        if kill == 2 or (kill == 1 and not self.marker.exists()):
            self.marker.touch()
            os._exit(1)
        time.sleep(self.delay)
        return self.net(x)


def build(marker: str, delay: float = 0.0) -> Tripwire:
    return Tripwire(marker, delay)
