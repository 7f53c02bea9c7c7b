"""The penalised logistic regression of the fast modes (deep features, radiomics features).

Standardised features, L2 penalty, the penalty chosen by stratified cross-validation on the
training patients only (log-loss, as R ``glmnet::cv.glmnet(alpha = 0, type.measure = "deviance")``
does for ridge) — the validation cohort never takes part in choosing it. The fitted model is saved
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


def fit_penalised_logistic(features: np.ndarray, y: np.ndarray, seed: int = 0) -> LinearModel:
    """Fit on the training patients: drop constant or non-finite columns, standardise, choose C by
    stratified k-fold (:func:`inner_folds`) on log-loss, refit on all of them."""
    from sklearn.linear_model import LogisticRegressionCV

    x = np.asarray(features, dtype=float)
    y = np.asarray(y, dtype=int)
    folds = inner_folds(y, seed)
    kept = _usable_columns(x)
    if kept.size == 0:
        raise CrcInputError("Every feature is constant or missing on the training patients; there is nothing to learn from.")
    x = x[:, kept]
    mean, scale = x.mean(axis=0), x.std(axis=0)
    # l1_ratios=(0,) is the pure L2 (ridge) penalty, spelled as scikit-learn 1.10 wants it.
    model = LogisticRegressionCV(Cs=C_GRID, l1_ratios=(0.0,), cv=folds, scoring="neg_log_loss", max_iter=5000,
                                 solver="lbfgs", use_legacy_attributes=False)
    model.fit((x - mean) / scale, y)
    # scores_: folds × l1 ratios × Cs of negative log-loss.
    cv_log_loss = -np.asarray(model.scores_, dtype=float).reshape(-1, len(C_GRID)).mean(axis=0)
    return LinearModel(mean, scale, model.coef_[0].copy(), float(model.intercept_[0]), float(np.ravel(model.C_)[0]), kept,
                       cv_log_loss)


def cross_fitted_predictions(features: np.ndarray, y: np.ndarray, c: float, seed: int = 0) -> np.ndarray:
    """Each training patient's probability from a model fitted without it: on the folds of
    :func:`inner_folds`, at the chosen penalty ``c``, with the columns kept and the standardisation
    learned inside each fold's training part. What a model stacked on this one (the combined
    clinical + DL model) must take as a training patient's score: a patient's score from a model
    fitted on that patient is optimistic."""
    from sklearn.linear_model import LogisticRegression

    x = np.asarray(features, dtype=float)
    y = np.asarray(y, dtype=int)
    out = np.full(len(y), np.nan)
    for fitted, held in inner_folds(y, seed).split(x, y):
        kept = _usable_columns(x[fitted])
        part = x[fitted][:, kept]
        mean, scale = part.mean(axis=0), part.std(axis=0)
        model = LogisticRegression(C=c, l1_ratio=0.0, max_iter=5000, solver="lbfgs")
        model.fit((part - mean) / scale, y[fitted])
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
