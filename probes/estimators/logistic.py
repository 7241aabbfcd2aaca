"""``LogisticCalibrator``: a LightningModule around ``nn.Linear(F, 1)``.

Trained by a Lightning ``Trainer`` with full-batch L-BFGS on standardized features
(statistics of the train split), class-balanced BCE, L2 on the weights through weight decay,
early stopping on the calib loss, a prior correction and optional temperature scaling on calib.
Without the prior correction it matches scikit-learn's
``LogisticRegression(class_weight="balanced", C=1 / (N * weight_decay))`` on the same data.

Balanced weights make the fit see both classes as equally frequent, which helps the direction
but biases the probabilities towards 1/2: with 18% valid records, a one-feature model would
say "valid" at about 50% for an average record. Prior correction adds ``log(n_pos / n_neg)``
(train counts) to the logit, which undoes that weighting exactly for a well-specified model;
temperature scaling is then fitted on the corrected logits. Temperature alone cannot fix it:
it scales the logit and cannot move an intercept.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from contextlib import contextmanager

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import EarlyStopping
from sklearn.base import BaseEstimator, ClassifierMixin
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ..threads import torch_threads


class LinearProbe(L.LightningModule):
    """The trained module: ``logit = w . (x - mean) / std + b`` with a balanced BCE."""

    def __init__(
        self,
        mean: torch.Tensor,
        std: torch.Tensor,
        pos_weight: float,
        neg_weight: float,
        weight_decay: float,
        max_iter: int,
    ):
        super().__init__()
        self.register_buffer("mean", mean)  # (F,)
        self.register_buffer("std", std)  # (F,)
        self.linear = nn.Linear(mean.numel(), 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        self.pos_weight, self.neg_weight = pos_weight, neg_weight
        self.weight_decay, self.max_iter = weight_decay, max_iter

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return self.linear((X - self.mean) / self.std).squeeze(-1)  # (N,) logits

    def _loss(self, batch) -> torch.Tensor:
        X, y = batch
        w = torch.where(y > 0.5, self.pos_weight, self.neg_weight)
        bce = nn.functional.binary_cross_entropy_with_logits(self(X), y, weight=w)
        return bce

    def training_step(self, batch, batch_idx):
        loss = self._loss(batch)
        # L2 on the weight only (the bias is free), as scikit-learn does.
        loss = loss + 0.5 * self.weight_decay * self.linear.weight.square().sum()
        self.log("train/loss", loss, prog_bar=False)
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("calib/loss", self._loss(batch), prog_bar=False)

    def configure_optimizers(self):
        return torch.optim.LBFGS(
            self.parameters(),
            lr=1.0,
            max_iter=self.max_iter,
            line_search_fn="strong_wolfe",
            tolerance_grad=1e-9,
            tolerance_change=1e-12,
        )


#: The L2 strengths that ``weight_decay="auto"`` tries (on standardized features).
WEIGHT_DECAY_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0)


class LogisticCalibrator(ClassifierMixin, BaseEstimator):
    """Logistic regression on features, trained with Lightning.

    Args:
        weight_decay: L2 strength on the standardized weights (per record: the loss is a
            mean); a sequence of strengths, or ``"auto"`` for :data:`WEIGHT_DECAY_GRID`, fits
            each and keeps the one whose scorer (prior shift and temperature included) has the
            lowest NLL on the calib split. Ties keep the first. The test split is never read.
        max_epochs: L-BFGS steps (each up to ``max_iter`` iterations over the full train set).
        patience: early stopping on the calib loss.
        temperature: fit a temperature on the calib split after training.
        class_balanced: weight classes so that each carries half of the loss.
        prior_correction: with ``class_balanced``, add ``log(n_pos / n_neg)`` of the train
            split to the logit so that probabilities follow the train class balance.
        max_iter: L-BFGS iterations per step.

    Learned: ``weight_decay_`` (the strength used), ``calib_nll_`` (``{strength: NLL}``,
    every candidate), ``prior_shift_``, ``temperature_``, ``coef_``, ``intercept_``.
    ``predict_proba`` returns ``(N, 2)``: P(invalid), P(valid).
    """

    def __init__(
        self,
        weight_decay: float | str | Sequence[float] = "auto",
        max_epochs: int = 50,
        patience: int = 5,
        temperature: bool = True,
        class_balanced: bool = True,
        prior_correction: bool = True,
        max_iter: int = 20,
    ):
        self.weight_decay = weight_decay
        self.max_epochs = max_epochs
        self.patience = patience
        self.temperature = temperature
        self.class_balanced = class_balanced
        self.prior_correction = prior_correction
        self.max_iter = max_iter

    def fit(self, X_train, y_train, X_calib=None, y_calib=None, *, logger=False):
        """``X_* (N, F)``, ``y_* (N,)`` in {0, 1}; calib drives early stopping, the choice of
        weight decay and the temperature. ``logger``: a Lightning logger for the training
        curves (e.g. ``WandbLogger``), or ``False``; with several strengths only the chosen
        one's curves are logged. It is where the curves go, not a hyper-parameter, so it is
        an argument of ``fit``, not of ``__init__`` (and ``clone`` never copies it).

        Without calib (a refit on all records), one strength is required, training runs
        ``max_epochs`` steps and the temperature is 1 until :meth:`set_temperature` sets it
        from held-out logits."""
        grid = weight_decay_grid(self.weight_decay)  # validated before any work
        Xt, yt = _tensors(X_train, y_train)
        if X_calib is None:
            if len(grid) != 1:
                raise ValueError(
                    "without a calib split, weight_decay must be one strength (it is chosen "
                    f"on calib), got {self.weight_decay!r}"
                )
            Xc = yc = None
        else:
            Xc, yc = _tensors(X_calib, y_calib)
        n, n_pos = len(yt), float(yt.sum())
        if n_pos in (0, n):
            raise ValueError("the train split holds one class only: nothing to learn")
        balanced = self.class_balanced and self.prior_correction
        self.prior_shift_ = math.log(n_pos / (n - n_pos)) if balanced else 0.0
        self.n_features_in_ = Xt.shape[1]
        self.classes_ = np.array([0, 1])
        mean = Xt.mean(dim=0)
        std = Xt.std(dim=0, correction=0)
        std = torch.where(std > 1e-12, std, torch.ones_like(std))  # constant columns
        pos_w, neg_w = (
            (n / (2 * n_pos), n / (2 * (n - n_pos))) if self.class_balanced else (1.0, 1.0)
        )
        data = (Xt, yt, Xc, yc)
        make = lambda wd: LinearProbe(mean, std, pos_w, neg_w, wd, self.max_iter)  # noqa: E731
        self.calib_nll_, fits = {}, {}
        for wd in grid:
            # With one strength its curves can be logged at once; with several, the chosen
            # one is refitted below with the logger (the fit is deterministic).
            self._fit_one(make(wd), *data, logger=logger if len(grid) == 1 else False)
            self.calib_nll_[wd] = float("nan") if Xc is None else self._calib_nll(Xc, yc)
            fits[wd] = (self.module_, self.epochs_, self.temperature_)
        self.weight_decay_ = min(grid, key=self.calib_nll_.__getitem__)
        if len(grid) > 1 and logger:
            self._fit_one(make(self.weight_decay_), *data, logger=logger)
        else:
            self.module_, self.epochs_, self.temperature_ = fits[self.weight_decay_]
        return self

    def _fit_one(self, module: LinearProbe, Xt, yt, Xc, yc, logger) -> None:
        """Train ``module`` (one strength); sets ``module_``, ``epochs_`` and ``temperature_``."""
        held_out = Xc is not None
        stop = EarlyStopping("calib/loss", patience=self.patience, min_delta=1e-7)
        full = lambda X, y: DataLoader(TensorDataset(X, y), batch_size=len(y))  # noqa: E731
        # One thread: these are small dense problems, fitted many times (a cross-validation
        # fits hundreds); two OpenMP threads against a busy core made them 3x slower
        # (benchmarks/bench_fit.py).
        with _quiet_lightning(), torch_threads(1):
            trainer = L.Trainer(
                max_epochs=self.max_epochs,
                accelerator="cpu",
                logger=logger,
                enable_checkpointing=False,
                enable_progress_bar=False,
                enable_model_summary=False,
                callbacks=[stop] if held_out else [],
                log_every_n_steps=1,
            )
            trainer.fit(module, full(Xt, yt), full(Xc, yc) if held_out else None)
            self.module_ = module.eval()
            self.epochs_ = trainer.current_epoch
            fit_t = self.temperature and held_out
            self.temperature_ = _fit_temperature(self._logits(Xc), yc) if fit_t else 1.0

    def _calib_nll(self, Xc: torch.Tensor, yc: torch.Tensor) -> float:
        """Mean NLL on calib of the scorer as it will be used (shift and temperature in)."""
        z = self._logits(Xc) / self.temperature_
        return float(nn.functional.binary_cross_entropy_with_logits(z, yc))

    @property
    def mean_(self) -> np.ndarray:
        return self.module_.mean.numpy()

    @property
    def std_(self) -> np.ndarray:
        return self.module_.std.numpy()

    @property
    def coef_(self) -> np.ndarray:
        """``(F,)`` weights on the standardized features."""
        return self.module_.linear.weight.detach()[0].numpy()

    @property
    def intercept_(self) -> float:
        """The fitted bias (of the balanced fit: ``prior_shift_`` is not in it)."""
        return float(self.module_.linear.bias.detach()[0])

    def _logits(self, X: torch.Tensor) -> torch.Tensor:
        """``(N,)`` prior-corrected logits, before temperature."""
        with torch.no_grad():
            return self.module_(X) + self.prior_shift_

    def logit_before_temperature(self, X) -> np.ndarray:
        """``(N,)`` prior-corrected logits of P(valid), not divided by ``temperature_``: what a
        temperature is fitted on (:meth:`set_temperature`)."""
        X, _ = _tensors(X, None)
        return self._logits(X).numpy()

    def set_temperature(self, logits, y) -> LogisticCalibrator:
        """Fit ``temperature_`` on held-out ``logits (N,)`` (from
        :meth:`logit_before_temperature` of models like this one, e.g. the out-of-fold
        logits of cross-validation) against ``y (N,)``."""
        z, yz = _tensors(np.asarray(logits).reshape(-1, 1), y)
        with torch_threads(1):
            self.temperature_ = _fit_temperature(z[:, 0], yz)
        return self

    def decision_function(self, X) -> np.ndarray:
        """``(N,)`` logits of P(valid): ``(w . z + b + prior_shift_) / temperature_``."""
        X, _ = _tensors(X, None)
        return (self._logits(X) / self.temperature_).numpy()

    def predict_proba(self, X) -> np.ndarray:
        p = 1 / (1 + np.exp(-self.decision_function(X).astype(np.float64)))
        return np.stack([1 - p, p], axis=1)

    def predict(self, X) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(np.int64)


def weight_decay_grid(value: float | str | Sequence[float]) -> tuple[float, ...]:
    """The strengths that ``weight_decay`` stands for; a bad value is named.

    Numbers may come as strings (YAML reads ``1e-2`` as one).
    """
    if value == "auto":
        return WEIGHT_DECAY_GRID
    items = [value] if isinstance(value, int | float | str) else value
    try:
        grid = tuple(float(v) for v in items)
    except (TypeError, ValueError):
        grid = ()
    if not grid or not all(v >= 0 for v in grid):  # NaN fails too
        raise ValueError(
            f"option 'weight_decay': expected a non-negative number, a list of them or "
            f"'auto', got {value!r}"
        )
    return grid


@contextmanager
def _quiet_lightning():
    """Lightning announces the devices at every ``Trainer``; one calibrator fits several
    (a cross-validation hundreds), so those notes are held back to warnings."""
    log = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    level = log.level
    log.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            # Lightning's own note on a torch API it calls (not ours to act on), repeated
            # at every Trainer.
            warnings.filterwarnings("ignore", message=r".*treespec, LeafSpec")
            # A refit without calib has no validation loop, by design.
            warnings.filterwarnings("ignore", message=r".*`validation_step` but have no")
            yield
    finally:
        log.setLevel(level)


def _tensors(X, y) -> tuple[torch.Tensor, torch.Tensor | None]:
    X = torch.as_tensor(np.asarray(X), dtype=torch.float32)
    if not torch.isfinite(X).all():
        raise ValueError("features hold NaN or inf (skipped records must be left out)")
    return X, None if y is None else torch.as_tensor(np.asarray(y), dtype=torch.float32)


def _fit_temperature(logits: torch.Tensor, y: torch.Tensor) -> float:
    """The ``T > 0`` that minimizes the calib NLL of ``sigmoid(logit / T)``."""
    log_t = torch.zeros((), requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=100, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = nn.functional.binary_cross_entropy_with_logits(logits / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp().clamp(0.05, 20.0))
