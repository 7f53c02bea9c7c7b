"""The penalised logistic regression of the fast modes (deep features, radiomics features).

Standardised features, L2 penalty, the penalty chosen by stratified cross-validation on the
training patients only (log-loss, as R ``glmnet::cv.glmnet(alpha = 0, type.measure = "deviance")``
does for ridge), with the standardisation learned inside each fold — the validation cohort never
takes part in choosing it, nor a held-out fold in scaling its own features. The fitted model is saved
as plain JSON numbers (no pickle), so a run copied between machines loads without running code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from crc_core.errors import CrcInputError

#: Inverse penalties tried (scikit-learn's C = 1 / lambda), 10^-4 … 10^3.
C_GRID = np.logspace(-4, 3, 15)


@dataclass(frozen=True)
class LinearModel:
    """prob = 1 / (1 + exp(-(((x - mean) / scale) · coef + intercept))), with ``kept`` the columns
    used (constant or empty features are dropped)."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    c: float
    kept: np.ndarray
    #: The fast mode's training curve: mean cross-validated log-loss for each C of :data:`C_GRID`.
    cv_log_loss: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def predict(self, features: np.ndarray) -> np.ndarray:
        x = (np.asarray(features, dtype=float)[:, self.kept] - self.mean) / self.scale
        return 1.0 / (1.0 + np.exp(-(x @ self.coef + self.intercept)))

    def to_dict(self) -> dict:
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in self.__dict__.items()}

    def save(self, path: Path) -> Path:
        from crc_core.workspace import atomic_write_text

        return atomic_write_text(Path(path), json.dumps(self.to_dict()))

    @classmethod
    def load(cls, path: Path) -> "LinearModel":
        try:
            values = json.loads(Path(path).read_text())
            return cls(np.asarray(values["mean"]), np.asarray(values["scale"]), np.asarray(values["coef"]),
                       float(values["intercept"]), float(values["c"]), np.asarray(values["kept"], dtype=int),
                       np.asarray(values.get("cv_log_loss", [])))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CrcInputError(f"The model file {path} is damaged ({exc}); train the run again.") from exc


def inner_folds(y: np.ndarray, seed: int = 0):
    """The stratified folds the penalty is chosen on (k = 5, or the smaller class size)."""
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(y, dtype=int)
    smallest = int(min((y == 0).sum(), (y == 1).sum()))
    if smallest < 2:
        raise CrcInputError(f"The training patients hold {smallest} of one class; at least 2 of each are needed to fit a model.")
    return StratifiedKFold(n_splits=min(5, smallest), shuffle=True, random_state=seed)


def _usable_columns(x: np.ndarray) -> np.ndarray:
    finite = np.isfinite(x).all(axis=0)
    spread = np.nanstd(np.where(np.isfinite(x), x, np.nan), axis=0)
    return np.flatnonzero(finite & (spread > 0))


class _Standardised:
    """The columns kept and their mean and SD, learned from one training part."""

    def __init__(self, x: np.ndarray):
        self.kept = _usable_columns(x)
        part = x[:, self.kept]
        self.mean, self.scale = part.mean(axis=0), part.std(axis=0)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return (x[:, self.kept] - self.mean) / self.scale


def _logistic(c: float):
    from sklearn.linear_model import LogisticRegression

    # l1_ratio=0 is the pure L2 (ridge) penalty, spelled as scikit-learn 1.10 wants it. Each C is
    # fitted from scratch: warm starts along the path stopped short of the optimum at weak penalties.
    return LogisticRegression(C=c, l1_ratio=0.0, max_iter=5000, solver="lbfgs")


def _log_loss(y: np.ndarray, prob: np.ndarray) -> float:
    """Mean binary log-loss, the probabilities clipped at the float's epsilon as scikit-learn's
    ``log_loss`` clips them (a test holds the penalty path equal to its ``GridSearchCV``)."""
    eps = np.finfo(prob.dtype).eps
    prob = np.clip(prob, eps, 1 - eps)
    return float(-np.mean(y * np.log(prob) + (1 - y) * np.log(1 - prob)))


def fit_with_out_of_fold(features: np.ndarray, y: np.ndarray, seed: int = 0,
                         progress: Callable[[int, int], None] | None = None) -> tuple[LinearModel, np.ndarray]:
    """The model of :func:`fit_penalised_logistic`, and each patient's out-of-fold probability at
    the chosen penalty (:func:`cross_fitted_predictions`), from the same fold fits.
    ``progress(done, total)`` after each of the fits (every inner fold × every C, then the final
    one), in this thread, so a long fit moves and a Stop is heard between fits."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

    x = np.asarray(features, dtype=float)
    y = np.asarray(y, dtype=int)
    folds = list(inner_folds(y, seed).split(x, y))
    if _usable_columns(x).size == 0:
        raise CrcInputError("Every feature is constant or missing on the training patients; there is nothing to learn from.")
    total = len(folds) * len(C_GRID) + 1
    scaled = []
    for fitted, held in folds:  # each fold's columns and standardisation learned from its training part alone
        scale = _Standardised(x[fitted])
        scaled.append((scale(x[fitted]), scale(x[held])))
    paths = np.zeros((len(folds), len(C_GRID)), dtype=object)
    pool = ThreadPoolExecutor()  # sklearn's solver leaves the GIL often enough for the fits to overlap
    try:
        work = {pool.submit(lambda k, j: _logistic(float(C_GRID[j])).fit(scaled[k][0], y[folds[k][0]])
                            .predict_proba(scaled[k][1])[:, 1], k, j): (k, j)
                for k in range(len(folds)) for j in range(len(C_GRID))}
        for done, future in enumerate(as_completed(work), start=1):
            k, j = work[future]
            paths[k, j] = future.result()
            if progress:
                progress(done, total)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # a Stop drops the fits not yet begun
    losses = np.array([[_log_loss(y[held], paths[k, j]) for j in range(len(C_GRID))] for k, (_, held) in enumerate(folds)])
    cv_log_loss = losses.mean(axis=0)
    chosen = int(np.argmin(cv_log_loss))  # the first (strongest penalty) of equal losses
    scale = _Standardised(x)
    model = _logistic(float(C_GRID[chosen])).fit(scale(x), y)
    if progress:
        progress(total, total)
    out_of_fold = np.full(len(y), np.nan)
    for k, (_, held) in enumerate(folds):
        out_of_fold[held] = paths[k, chosen]
    return (LinearModel(scale.mean, scale.scale, model.coef_[0].copy(), float(model.intercept_[0]), float(C_GRID[chosen]),
                        scale.kept, cv_log_loss), out_of_fold)


def fit_penalised_logistic(features: np.ndarray, y: np.ndarray, seed: int = 0) -> LinearModel:
    """Fit on the training patients: drop constant or non-finite columns, standardise, choose C by
    stratified k-fold (:func:`inner_folds`) on the mean held-out log-loss — the columns kept and
    the standardisation learned inside each fold's training part, as scikit-learn's
    ``GridSearchCV(make_pipeline(StandardScaler(), LogisticRegression()), scoring="neg_log_loss")``
    (a test holds them equal) — then refit on all of them."""
    return fit_with_out_of_fold(features, y, seed)[0]


def cross_fitted_predictions(features: np.ndarray, y: np.ndarray, c: float, seed: int = 0) -> np.ndarray:
    """Each training patient's probability from a model fitted without it: on the folds of
    :func:`inner_folds`, at the chosen penalty ``c``, with the columns kept and the standardisation
    learned inside each fold's training part. What a model stacked on this one (the combined
    clinical + DL model) must take as a training patient's score: a patient's score from a model
    fitted on that patient is optimistic."""
    x = np.asarray(features, dtype=float)
    y = np.asarray(y, dtype=int)
    out = np.full(len(y), np.nan)
    for fitted, held in inner_folds(y, seed).split(x, y):
        scale = _Standardised(x[fitted])
        out[held] = _logistic(c).fit(scale(x[fitted]), y[fitted]).predict_proba(scale(x[held]))[:, 1]
    return out


def features_network(extractor, linear: LinearModel):
    """A features-mode run as one network: the frozen backbone, the standardisation, and the
    logistic regression as its last linear layer (``head``), with logits (-z/2, z/2) so that the
    softmax gives class 1 the regression's probability and each class a score with a gradient
    (the low class's evidence is the high class's, negated). Grad-CAM explains it like a
    fine-tuned network."""
    import torch
    import torch.nn as nn

    class FeaturesNetwork(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = extractor
            self.register_buffer("kept", torch.as_tensor(linear.kept, dtype=torch.long))
            self.register_buffer("mean", torch.as_tensor(linear.mean, dtype=torch.float32))
            self.register_buffer("scale", torch.as_tensor(linear.scale, dtype=torch.float32))
            self.head = nn.Linear(len(linear.kept), 2)
            coef = torch.as_tensor(linear.coef, dtype=torch.float32)
            with torch.no_grad():
                self.head.weight.copy_(torch.stack([-coef / 2, coef / 2]))
                self.head.bias.copy_(torch.tensor([-linear.intercept / 2, linear.intercept / 2], dtype=torch.float32))

        def features(self, x):
            return (self.backbone(x)[:, self.kept] - self.mean) / self.scale

        def forward(self, x):
            return self.head(self.features(x))

    return FeaturesNetwork().eval()
