"""Handwritten digits (scikit-learn's bundled `load_digits`: 1,797 8x8 images, no download) for the MLP, CNN
and collapse families: 1,000 images train, the other 797 are held out; pixels scaled to [0, 1]."""

from __future__ import annotations

import numpy as np
import torch


def digits(seed: int = 0, train_points: int = 1000, image: bool = False):
    """(x_train, y_train, x_test, y_test); `image`: shape (N, 1, 8, 8) for a CNN, else (N, 64)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.data / 16.0, dtype=torch.float32)
    y = torch.tensor(data.target, dtype=torch.int64)
    order = torch.from_numpy(np.random.default_rng(seed).permutation(len(x)))
    x, y = x[order], y[order]
    if image:
        x = x.reshape(-1, 1, 8, 8)
    return x[:train_points], y[:train_points], x[train_points:], y[train_points:]
