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


def _standardised_fit(x: np.ndarray, y: np.ndarray, c: float):
    """Columns kept, their mean and SD, and an L2 logistic regression at ``c`` on the standardised
    columns — everything learned from ``x`` alone."""
    from sklearn.linear_model import LogisticRegression

    kept = _usable_columns(x)
    part = x[:, kept]
    mean, scale = part.mean(axis=0), part.std(axis=0)
    # l1_ratio=0 is the pure L2 (ridge) penalty, spelled as scikit-learn 1.10 wants it. Each C is
    # fitted from scratch: warm starts along the path stopped short of the optimum at weak penalties.
    model = LogisticRegression(C=c, l1_ratio=0.0, max_iter=5000, solver="lbfgs").fit((part - mean) / scale, y)
    return kept, mean, scale, model


def fit_penalised_logistic(features: np.ndarray, y: np.ndarray, seed: int = 0) -> LinearModel:
    """Fit on the training patients: drop constant or non-finite columns, standardise, choose C by
    stratified k-fold (:func:`inner_folds`) on the mean held-out log-loss — the columns kept and
    the standardisation learned inside each fold's training part, as scikit-learn's
    ``GridSearchCV(make_pipeline(StandardScaler(), LogisticRegression()), scoring="neg_log_loss")``
    (a test holds them equal) — then refit on all of them."""
    from sklearn.metrics import log_loss

    x = np.asarray(features, dtype=float)
    y = np.asarray(y, dtype=int)
    folds = list(inner_folds(y, seed).split(x, y))
    if _usable_columns(x).size == 0:
        raise CrcInputError("Every feature is constant or missing on the training patients; there is nothing to learn from.")
    losses = np.zeros((len(folds), len(C_GRID)))
    for k, (fitted, held) in enumerate(folds):
        for i, c in enumerate(C_GRID):
            kept, mean, scale, model = _standardised_fit(x[fitted], y[fitted], c)
            prob = model.predict_proba((x[held][:, kept] - mean) / scale)[:, 1]
            losses[k, i] = log_loss(y[held], prob, labels=[0, 1])
    cv_log_loss = losses.mean(axis=0)
    best = float(C_GRID[int(np.argmin(cv_log_loss))])  # the first (strongest penalty) of equal losses
    kept, mean, scale, model = _standardised_fit(x, y, best)
    return LinearModel(mean, scale, model.coef_[0].copy(), float(model.intercept_[0]), best, kept, cv_log_loss)


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
        kept, mean, scale, model = _standardised_fit(x[fitted], y[fitted], c)
        out[held] = model.predict_proba((x[held][:, kept] - mean) / scale)[:, 1]
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
