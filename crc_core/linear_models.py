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


def fit_penalised_logistic(features: np.ndarray, y: np.ndarray, seed: int = 0) -> LinearModel:
    """Fit on the training patients: drop constant or non-finite columns, standardise, choose C by
    stratified k-fold (k = 5, or the smaller class size) on log-loss, refit on all of them."""
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.model_selection import StratifiedKFold

    x = np.asarray(features, dtype=float)
    y = np.asarray(y, dtype=int)
    smallest = int(min((y == 0).sum(), (y == 1).sum()))
    if smallest < 2:
        raise CrcInputError(f"The training patients hold {smallest} of one class; at least 2 of each are needed to fit a model.")
    finite = np.isfinite(x).all(axis=0)
    spread = np.nanstd(np.where(np.isfinite(x), x, np.nan), axis=0)
    kept = np.flatnonzero(finite & (spread > 0))
    if kept.size == 0:
        raise CrcInputError("Every feature is constant or missing on the training patients; there is nothing to learn from.")
    x = x[:, kept]
    mean, scale = x.mean(axis=0), x.std(axis=0)
    folds = StratifiedKFold(n_splits=min(5, smallest), shuffle=True, random_state=seed)
    # l1_ratios=(0,) is the pure L2 (ridge) penalty, spelled as scikit-learn 1.10 wants it.
    model = LogisticRegressionCV(Cs=C_GRID, l1_ratios=(0.0,), cv=folds, scoring="neg_log_loss", max_iter=5000,
                                 solver="lbfgs", use_legacy_attributes=False)
    model.fit((x - mean) / scale, y)
    # scores_: folds × l1 ratios × Cs of negative log-loss.
    cv_log_loss = -np.asarray(model.scores_, dtype=float).reshape(-1, len(C_GRID)).mean(axis=0)
    return LinearModel(mean, scale, model.coef_[0].copy(), float(model.intercept_[0]), float(np.ravel(model.C_)[0]), kept,
                       cv_log_loss)
