"""The local learning coefficient from devinterp: against the exact value of a Gaussian posterior, chain health,
and what happens without the extra."""

import math
import sys

import numpy as np
import pytest
import torch
from torch import nn

from grokmon.errors import ConfigError
from grokmon.metrics import LLCSettings, MetricOptions, compute_checkpoint_metrics

pytestmark = pytest.mark.usefixtures("one_thread")


def _least_squares(n=64, seed=0):
    """Linear(3, 1) in float64 at the least-squares minimum of a noisy linear task, and the task."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=generator, dtype=torch.float64)
    y = x @ torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64) + 0.3 + 0.1 * torch.randn(n, generator=generator,
                                                                                           dtype=torch.float64)
    design = torch.cat([x, torch.ones(n, 1, dtype=torch.float64)], dim=1)
    solution = torch.linalg.lstsq(design, y[:, None]).solution[:, 0]
    model = nn.Linear(3, 1).double().eval()
    with torch.no_grad():
        model.weight.copy_(solution[:3][None])
        model.bias.copy_(solution[3:])
    return model, x, y, design


def test_llc_of_a_regular_model_is_the_exact_value_of_its_discretised_gaussian_posterior():
    pytest.importorskip("devinterp")
    model, x, y, design = _least_squares()
    nbeta, localization = 20.0, 5.0
    # The loss is quadratic, L0 + (w - w*)' H (w - w*) / 2 with H = 2 X'X / n, so full-batch SGLD (step lr) is a
    # linear chain whose stationary variance along each eigenvalue h of H is 1 / (a (1 - lr a / 4)),
    # a = nbeta h + localization; llc = nbeta E[L - L0] = nbeta / 2 sum h / (a (1 - lr a / 4)); d/2 = 2 at lr -> 0.
    h = np.linalg.eigvalsh((2 * design.T @ design / len(x)).numpy())
    a = nbeta * h + localization
    lr = 0.8 / a.max()  # fast mixing; the discretisation's bias is in `expected`
    expected = nbeta / 2 * float(np.sum(h / (a * (1 - lr * a / 4))))
    settings = LLCSettings(lr=lr, localization=localization, nbeta=nbeta, chains=4, draws=250, burnin=50,
                           batch_size=len(x))
    got = compute_checkpoint_metrics(model, (x, y), options=MetricOptions(groups=("llc",), llc=settings))
    assert got["llc"] == pytest.approx(expected, rel=0.15)
    assert got["llc_chain_ok"] is True and got["llc_se"] > 0


def _classifier():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 3))
    x = torch.randn(96, 4)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return model.eval(), x, y


def test_default_chains_stay_near_the_checkpoint_a_hot_sampler_is_flagged_and_the_model_is_left_alone():
    pytest.importorskip("devinterp")
    model, x, y = _classifier()
    for p in model.parameters():
        p.grad = None
    before = {k: v.clone() for k, v in model.state_dict().items()}
    options = MetricOptions(groups=("llc",), llc=LLCSettings(chains=2, draws=60, batch_size=48))
    stream = torch.get_rng_state()
    healthy = compute_checkpoint_metrics(model, (x, y), options=options)
    assert torch.equal(torch.get_rng_state(), stream)  # devinterp's seeding does not reach a training loop
    assert healthy["llc_chain_ok"] is True and healthy["llc"] > 0
    hot = MetricOptions(groups=("llc",), llc=LLCSettings(lr=0.3, localization=0.0, chains=2, draws=60, batch_size=48))
    diverged = compute_checkpoint_metrics(model, (x, y), options=hot)
    assert diverged["llc_chain_ok"] is False
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert not any(m.training for m in model.modules()) and all(p.grad is None for p in model.parameters())
    again = compute_checkpoint_metrics(model, (x, y), options=options)
    assert again == healthy  # seeded: the same chains every time


def test_llc_without_labels_is_null():
    pytest.importorskip("devinterp")
    model, x, _ = _classifier()
    assert compute_checkpoint_metrics(model, (x, None), options=MetricOptions(groups=("llc",))) == \
        {"llc": None, "llc_se": None, "llc_chain_ok": None}


def test_llc_without_the_extra_names_the_install_command(monkeypatch):
    for name in [m for m in sys.modules if m == "devinterp" or m.startswith("devinterp.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "devinterp", None)
    model, x, y = _classifier()
    with pytest.raises(ConfigError, match=r"^the llc metric needs devinterp; install it with "
                                          r"pip install 'grokmon\[devinterp\]'$"):
        compute_checkpoint_metrics(model, (x, y), options=MetricOptions(groups=("llc",)))
    assert math.isfinite(compute_checkpoint_metrics(model, None, options=MetricOptions(groups=("weights",)))
                         ["weight_norm"])
