"""The local learning coefficient (Lau et al. 2023) of a checkpoint, by devinterp's SGLD estimator.

llc = n·beta · (mean loss over the SGLD draws - the checkpoint's loss), from `devinterp` (the optional extra
`grokmon[devinterp]`, version 1.x: its `estimate_learning_coeff_with_summary` with localised SGLD), on the
train split with the loss grokmon reports for its labels. The network runs in eval mode throughout (the
sampler would switch it to training mode; grokmon measures the function the checkpoint computes, with
dropout off and BatchNorm's running statistics), and the model handed in is left as it was.

A chain whose step size is too large for the checkpoint wanders off into weights that predict worse than
knowing nothing, and the estimate is then a large number that means nothing. `llc_chain_ok` says whether
every chain stayed near the checkpoint: each chain's mean sampled loss is finite and below the midpoint
between the checkpoint's loss and the loss of the best prediction that ignores the input (the entropy of
the labels for classes; their variance for float targets), or within 5 % of the checkpoint's loss (a
checkpoint at chance, step 0, has no midpoint to speak of).
"""

from __future__ import annotations

import contextlib
import math
import warnings
from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..errors import ConfigError
from .accuracy import accuracy_values

INSTALL_HINT = "pip install 'grokmon[devinterp]'"
CHAIN_MIDPOINT = 0.5  # of the way from the checkpoint's loss to the input-blind loss
CHAIN_SLACK = 0.05  # relative to the checkpoint's loss


@dataclass(frozen=True)
class LLCSettings:
    """devinterp's sampler settings. The defaults keep every chain near the checkpoint on the sample run
    (README: "Local learning coefficient"); nbeta None is devinterp's default, batch / log(batch)."""

    lr: float = 1e-3
    localization: float = 100.0
    nbeta: float | None = None
    chains: int = 4
    draws: int = 200
    burnin: int = 0
    batch_size: int = 256

    def to_dict(self) -> dict:
        """JSON-ready form, stored in the results' metadata."""
        return asdict(self)


def require_devinterp() -> None:
    """ConfigError with the install command when the optional extra is absent."""
    try:
        import devinterp.slt.sampler  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"the llc metric needs devinterp; install it with {INSTALL_HINT}") from exc


def input_blind_loss(y: torch.Tensor, outputs: int) -> float:
    """The loss of the best constant prediction: the entropy of the class frequencies, or the variance of
    float targets (summed over outputs, as grokmon's MSE is averaged over them: their mean).

    >>> round(input_blind_loss(torch.tensor([0, 1, 2, 3]), 4), 6) == round(math.log(4), 6)
    True
    """
    if y.is_floating_point():
        return float(y.reshape(len(y), -1).to(torch.float64).var(dim=0, correction=0).mean())
    counts = torch.bincount(y.long().cpu(), minlength=max(2, outputs)).to(torch.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * p.log()).sum())


def chain_ok(trace: torch.Tensor, checkpoint_loss: float, blind_loss: float) -> bool:
    """Whether every chain (a row of the chains x draws loss trace) stayed near the checkpoint's loss.

    >>> chain_ok(torch.tensor([[0.2, 0.3], [0.25, 0.3]]), 0.1, 4.0), chain_ok(torch.tensor([[9.0, 12.0]]), 0.1, 4.0)
    (True, False)
    """
    means = trace.to(torch.float64).mean(dim=1)
    bound = max(checkpoint_loss + CHAIN_MIDPOINT * (blind_loss - checkpoint_loss), (1 + CHAIN_SLACK) * checkpoint_loss)
    return bool(torch.isfinite(trace).all() and (means <= bound).all())


@contextlib.contextmanager
def _modes_kept(model: nn.Module):
    """The model's train/eval flags, module by module, as they were before the block."""
    modes = [(m, m.training) for m in model.modules()]
    try:
        yield
    finally:
        for module, training in modes:
            module.train(training)


class _Points(torch.utils.data.TensorDataset):
    """Points that a DataLoader fetches a batch at a time (one indexing per batch; per-point fetches and
    collation cost as much as the SGLD step itself)."""

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, ...]:
        index = torch.as_tensor(indices, device=self.tensors[0].device)
        return tuple(t[index] for t in self.tensors)


def _as_fetched(batch):
    return batch


def _shuffled_batches(x: torch.Tensor, y: torch.Tensor, batch: int, seed: int) -> torch.utils.data.DataLoader:
    """Seeded shuffled batches of (x, y), reshuffled every pass."""
    return torch.utils.data.DataLoader(_Points(x, y), batch_size=batch, shuffle=True, collate_fn=_as_fetched,
                                       generator=torch.Generator().manual_seed(seed))


def llc_values(model: nn.Module, x: torch.Tensor, y: torch.Tensor, settings: LLCSettings, seed: int) -> dict:
    """`llc`, `llc_se` (std over chains / sqrt(chains)) and `llc_chain_ok` of the checkpoint the model holds,
    on the points (x, y). Needs devinterp (`require_devinterp`)."""
    from devinterp.optim import SGMCMC
    from devinterp.slt.sampler import estimate_learning_coeff_with_summary
    from devinterp.utils import default_nbeta

    def evaluate(network: nn.Module, batch):
        network.eval()
        inputs, labels = batch
        return accuracy_values(network(inputs).reshape(len(inputs), -1), labels)["loss"].mean()

    with torch.no_grad():
        outputs = model(x).reshape(len(x), -1)
        checkpoint_loss = float(accuracy_values(outputs, y)["loss"].mean())
    batch = min(settings.batch_size, len(x))
    nbeta = settings.nbeta if settings.nbeta is not None else float(default_nbeta(batch))
    kwargs = {"lr": settings.lr, "localization": settings.localization, "nbeta": nbeta}
    loader = _shuffled_batches(x, y, batch, seed)
    # devinterp seeds torch's global generators: a training loop measured live keeps its own random stream
    devices = [x.device] if x.device.type == "cuda" else []
    with _modes_kept(model), warnings.catch_warnings(), torch.random.fork_rng(devices=devices):
        warnings.simplefilter("ignore")  # devinterp warns about seeds, burn-in and nbeta on every call
        try:
            result = estimate_learning_coeff_with_summary(
                model, loader, evaluate=evaluate, sampling_method=SGMCMC.sgld, optimizer_kwargs=kwargs,
                num_draws=settings.draws, num_chains=settings.chains, num_burnin_steps=settings.burnin,
                init_loss=checkpoint_loss, seed=seed, device=x.device, verbose=False)
        except RuntimeError as exc:
            if "NaN detected" not in str(exc):
                raise
            return {"llc": None, "llc_se": None, "llc_chain_ok": False}  # a chain blew up: no number to give
    trace = torch.as_tensor(result["loss/trace"])
    ok = chain_ok(trace, checkpoint_loss, input_blind_loss(y, outputs.shape[1]))
    se = result["llc/std"] / math.sqrt(settings.chains) if settings.chains > 1 else None
    return {"llc": float(result["llc/mean"]), "llc_se": se, "llc_chain_ok": ok}
