"""The fast modes' penalised logistic regression against scikit-learn's own cross-validation, and
its out-of-fold scores against fits that never saw the patient."""

from __future__ import annotations

import numpy as np
import pytest

from crc_core.errors import CrcInputError
from crc_core.networks.linear_models import C_GRID, LinearModel, cross_fitted_predictions, fit_penalised_logistic, inner_folds


def features(seed: int = 0, n: int = 120, width: int = 40):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, width)) * rng.uniform(0.5, 20, width) + rng.normal(0, 50, width)  # unequal scales
    y = (x[:, 0] / 10 + x[:, 1] / 5 + rng.normal(0, 2, n) > np.median(x[:, 0] / 10 + x[:, 1] / 5)).astype(int)
    return x, y


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_penalty_and_coefficients_equal_scikit_learns_grid_search(seed):
    """GridSearchCV over a StandardScaler + LogisticRegression pipeline on the same stratified
    folds, scored by log-loss, refit on all: the same C and coefficients within 1e-4."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = features(seed)
    ours = fit_penalised_logistic(x, y, seed=seed)
    search = GridSearchCV(make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)),
                          {"logisticregression__C": C_GRID}, scoring="neg_log_loss", cv=inner_folds(y, seed)).fit(x, y)
    assert ours.c == pytest.approx(search.best_params_["logisticregression__C"])
    theirs = search.best_estimator_[-1]
    np.testing.assert_allclose(ours.coef, theirs.coef_[0], atol=1e-4)
    assert ours.intercept == pytest.approx(theirs.intercept_[0], abs=1e-4)
    np.testing.assert_allclose(ours.cv_log_loss, -search.cv_results_["mean_test_score"], rtol=1e-4)
    np.testing.assert_allclose(ours.predict(x), search.predict_proba(x)[:, 1], atol=1e-4)


def test_out_of_fold_scores_come_from_fits_without_the_patient():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = features(3)
    c = fit_penalised_logistic(x, y).c
    scores = cross_fitted_predictions(x, y, c)
    for fitted, held in inner_folds(y).split(x, y):
        alone = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000)).fit(x[fitted], y[fitted])
        np.testing.assert_allclose(scores[held], alone.predict_proba(x[held])[:, 1], atol=1e-4)
    # A training patient's own-model score is more confident than its out-of-fold one.
    own = fit_penalised_logistic(x, y).predict(x)
    assert np.abs(own - y).mean() < np.abs(scores - y).mean()


def test_constant_columns_are_dropped_and_the_model_file_round_trips(tmp_path):
    x, y = features(4)
    x[:, 5] = 7.0
    model = fit_penalised_logistic(x, y)
    assert 5 not in model.kept and len(model.kept) == x.shape[1] - 1
    saved = LinearModel.load(model.save(tmp_path / "model.json"))
    np.testing.assert_allclose(saved.predict(x), model.predict(x))
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(CrcInputError, match=r"broken\.json is damaged .* train the run again"):
        LinearModel.load(tmp_path / "broken.json")
    with pytest.raises(CrcInputError, match="at least 2 of each are needed"):
        fit_penalised_logistic(x[:10], np.r_[np.ones(9), 0])


def test_the_out_of_fold_scores_of_the_fit_are_those_of_separate_fits():
    from crc_core.networks.linear_models import fit_with_out_of_fold

    x, y = features(5)
    model, out_of_fold = fit_with_out_of_fold(x, y)
    np.testing.assert_allclose(out_of_fold, cross_fitted_predictions(x, y, model.c), atol=1e-10)
    np.testing.assert_allclose(model.coef, fit_penalised_logistic(x, y).coef)
