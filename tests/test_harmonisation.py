"""crc_core.training.harmonisation against R ``sva::ComBat`` (tests/reference/harmonisation.R) and
neuroCombat 0.2.12's own ``neuroCombat`` and ``neuroCombatFromTraining`` on synthetic centres with
known shifts and scales, plus the centre effects it should remove, its JSON round trip and its
refusals."""

from __future__ import annotations

import contextlib
import io
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from neuroCombat import neuroCombat, neuroCombatFromTraining

from crc_core.training import harmonisation as hm
from crc_core.errors import CrcInputError

REFERENCE = Path(__file__).resolve().parent / "reference"
#: Three centres: (shift, scale) added to every feature of its patients.
CENTRES = {"A": (0.0, 1.0), "B": (2.0, 2.0), "C": (-1.0, 0.5)}
SIZES = {"A": 30, "B": 25, "C": 20}


def synthetic(seed: int = 0, n_features: int = 10):
    """Features with a known centre effect (shift and scale per centre), an age effect and a sex
    effect, as a DataFrame indexed by patient id."""
    rng = np.random.default_rng(seed)
    batch = np.concatenate([[c] * k for c, k in SIZES.items()])
    n = batch.size
    age = rng.normal(62, 10, n).round(0)
    sex = rng.choice(["F", "M"], n)
    biology = rng.normal(0, 1, (n, n_features)) + 0.05 * (age[:, None] - 62) + 0.8 * (sex == "M")[:, None]
    x = biology.copy()
    for centre, (shift, scale) in CENTRES.items():
        x[batch == centre] = biology[batch == centre] * scale + shift
    index = [f"P{i:03d}" for i in range(n)]
    features = pd.DataFrame(x, index=index, columns=[f"feature_{j}" for j in range(n_features)])
    covariates = pd.DataFrame({"age": age, "sex": sex}, index=index)
    return features, batch, covariates


def package_combat(features: np.ndarray, batch, covariates: pd.DataFrame | None = None, **columns):
    """neuroCombat's own fit (features × patients in, as it wants them), quietly."""
    covars = pd.DataFrame({"batch": np.asarray(batch)})
    if covariates is not None:
        for name in covariates.columns:
            covars[name] = covariates[name].to_numpy()
    with contextlib.redirect_stdout(io.StringIO()):
        return neuroCombat(np.asarray(features, dtype=float).T.copy(), covars, "batch", **columns)


class _NumpyForNeuroCombat:
    """numpy as neuroCombat 0.2.12 (2021) expects it: its ``neuroCombatFromTraining`` takes
    ``int()`` of the 1-element array ``np.where`` returns, which the project's numpy refuses
    ("only 0-dimensional arrays can be converted to Python scalars"). Only that changes."""

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def where(*args):
        found = np.where(*args)
        return tuple(a[0] if a.size == 1 else a for a in found) if len(args) == 1 else found


def package_from_training(features: np.ndarray, batch, estimates: dict, monkeypatch) -> np.ndarray:
    monkeypatch.setattr(sys.modules["neuroCombat.neuroCombat"], "np", _NumpyForNeuroCombat())
    with contextlib.redirect_stdout(io.StringIO()):
        out = neuroCombatFromTraining(np.asarray(features, dtype=float).T.copy(), np.asarray(batch), estimates)
    monkeypatch.undo()
    return out["data"].T


def training_split(batch: np.ndarray, seed: int = 1) -> np.ndarray:
    """Two thirds of each centre's patients for training."""
    rng = np.random.default_rng(seed)
    train = np.zeros(batch.size, bool)
    for centre in np.unique(batch):
        members = np.flatnonzero(batch == centre)
        train[rng.choice(members, size=2 * members.size // 3, replace=False)] = True
    return train


# ---------------------------------------------------------------------------------------------
# Equal to neuroCombat


def test_transductive_equals_neurocombat_without_covariates():
    features, batch, _ = synthetic()
    harmonised, model = hm.combat_transductive(features, batch)
    expected = package_combat(features.to_numpy(), batch)["data"].T  # neuroCombat(dat, covars, "batch")["data"]
    assert np.allclose(harmonised.to_numpy(), expected, rtol=0, atol=1e-10)
    assert harmonised.index.equals(features.index) and list(harmonised.columns) == list(features.columns)
    assert model.transductive and model.batches == ("A", "B", "C") and model.n_per_batch == (30, 25, 20)


def test_transductive_equals_neurocombat_with_covariates():
    features, batch, covariates = synthetic(seed=2)
    harmonised, model = hm.combat_transductive(features, batch, covariates)
    # neuroCombat(dat, covars, "batch", categorical_cols = ["sex"], continuous_cols = ["age"])
    fitted = package_combat(features.to_numpy(), batch, covariates, categorical_cols=["sex"], continuous_cols=["age"])
    assert np.allclose(harmonised.to_numpy(), fitted["data"].T, rtol=0, atol=1e-10)
    assert model.covariate_terms == ("sex = M", "age")
    # The kept estimates are the package's.
    assert np.allclose(model.gamma_star, fitted["estimates"]["gamma.star"], rtol=0, atol=1e-12)
    assert np.allclose(model.delta_star, fitted["estimates"]["delta.star"], rtol=0, atol=1e-12)
    assert np.allclose(model.var_pooled, fitted["estimates"]["var.pooled"][:, 0], rtol=0, atol=1e-12)
    # ... and the covariates' coefficients reproduce its covariate part of the mean, patient by patient.
    design = np.column_stack([(covariates["sex"] == "M").astype(float), covariates["age"].astype(np.float32)])
    assert np.allclose(design @ model.covariate_beta, fitted["estimates"]["mod.mean"].T, rtol=0, atol=1e-9)


def test_transductive_equals_r_sva_combat():
    data = pd.read_csv(REFERENCE / "harmonisation_data.csv", index_col="patient")
    r = json.loads((REFERENCE / "harmonisation_r.json").read_text())
    features = data.filter(like="feature_")
    # sva::ComBat(t(features), batch = centre)
    plain, _ = hm.combat_transductive(features, data["centre"])
    assert np.allclose(plain.to_numpy(), np.array(r["combat"]), rtol=0, atol=1e-12)
    # sva::ComBat(t(features), batch = centre, mod = model.matrix(~ sex + age))
    with_covariates, _ = hm.combat_transductive(features, data["centre"], data[["sex", "age"]])
    assert np.allclose(with_covariates.to_numpy(), np.array(r["combat_sex_age"]), rtol=0, atol=1e-12)
    assert not np.allclose(plain.to_numpy(), with_covariates.to_numpy(), atol=1e-3)


def test_array_in_array_out():
    features, batch, _ = synthetic()
    harmonised, _ = hm.combat_transductive(features.to_numpy(), batch)
    assert isinstance(harmonised, np.ndarray)
    assert np.allclose(harmonised, hm.combat_transductive(features, batch)[0].to_numpy(), rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------
# Learned on training patients, applied to the others


def test_train_then_apply_equals_neurocombat_from_training(monkeypatch):
    features, batch, _ = synthetic(seed=3)
    train = training_split(batch)
    model = hm.fit_combat(features[train], batch[train])
    assert not model.transductive
    fitted = package_combat(features[train].to_numpy(), batch[train])
    # neuroCombatFromTraining(dat_new, batch_new, neuroCombat(dat_train, ...)["estimates"])
    expected = package_from_training(features[~train].to_numpy(), batch[~train], fitted["estimates"], monkeypatch)
    applied = model.apply(features[~train], batch[~train])
    assert np.allclose(applied.to_numpy(), expected, rtol=0, atol=1e-10)
    assert applied.index.equals(features[~train].index)
    # On its own training patients it is neuroCombat's fit.
    assert np.allclose(model.apply(features[train], batch[train]).to_numpy(), fitted["data"].T, rtol=0, atol=1e-10)


def test_apply_uses_each_new_patients_own_covariates(monkeypatch):
    features, batch, covariates = synthetic(seed=4)
    train = training_split(batch)
    model = hm.fit_combat(features[train], batch[train], covariates[["age"]][train])
    fitted = package_combat(features[train].to_numpy(), batch[train], covariates[["age"]][train], continuous_cols=["age"])
    # neuroCombatFromTraining puts the training patients' average covariate effect in place of each
    # new patient's own; for a patient of exactly the (float32) training-average age the two agree.
    mean_age = float(np.mean(covariates["age"][train].to_numpy().astype(np.float32)))
    new = features[~train]
    at_mean = pd.DataFrame({"age": np.full(len(new), mean_age)}, index=new.index)
    expected = package_from_training(new.to_numpy(), batch[~train], fitted["estimates"], monkeypatch)
    assert np.allclose(model.apply(new, batch[~train], at_mean).to_numpy(), expected, rtol=0, atol=1e-5)
    # With their own ages: two centre-B patients with equal raw features, aged 50 and 70. Only
    # the part of a feature that age does not explain is rescaled by centre B's 1/sqrt(delta*), so
    # they come out 20 * beta * (1 - 1/sqrt(delta*)) apart; with the average age in place of their
    # own (neuroCombatFromTraining) they would come out equal.
    twins = pd.concat([new[batch[~train] == "B"].iloc[:1]] * 2)
    ages = pd.DataFrame({"age": [50.0, 70.0]}, index=twins.index)
    out = model.apply(twins, ["B", "B"], ages).to_numpy()
    delta_b = model.delta_star[model.batches.index("B")]
    assert (delta_b > 2).all()  # centre B's scale is 2: its variance about 4 times the others'
    expected_gap = 20 * model.covariate_beta[0] * (1 - 1 / np.sqrt(delta_b))
    assert np.allclose(out[1] - out[0], expected_gap, rtol=1e-9, atol=1e-12)
    assert (np.abs(out[1] - out[0]) > 0.1 * np.abs(20 * model.covariate_beta[0])).all()


def test_the_centre_effect_shrinks_on_new_patients():
    features, batch, covariates = synthetic(seed=5, n_features=12)
    train = training_split(batch)
    model = hm.fit_combat(features[train], batch[train])
    new = features[~train]
    before = hm.centre_mean_gap(new, batch[~train])
    after = hm.centre_mean_gap(model.apply(new, batch[~train]), batch[~train])
    # The known shifts (2 and -1 on features of SD about 1.3, scaled by 2 and 0.5) give centre gaps
    # of 1.4 to 4 pooled SDs among the 25 new patients; after ComBat every feature's gap is smaller,
    # typically by three quarters (what remains is the noise of 7 to 10 patients a centre).
    assert (before > 1).all()
    assert (after < before).all()
    assert (after / before).median() < 0.3
    # On the training patients themselves every gap falls by more than three quarters (not to 0:
    # the empirical-Bayes step shrinks each feature's centre shift towards the centre's shift over
    # all features, which is the common shift here, and leaves the noise about it).
    trained = hm.centre_mean_gap(model.apply(features[train], batch[train]), batch[train])
    assert (trained < 0.25 * hm.centre_mean_gap(features[train], batch[train])).all()
    # The spread is harmonised too: the ratio of centre B's SD to centre C's was about 4.
    sd = lambda table, centre: table[batch[~train] == centre].std()  # noqa: E731
    harmonised = model.apply(new, batch[~train])
    assert (sd(new, "B") / sd(new, "C")).median() > 2.5
    assert (sd(harmonised, "B") / sd(harmonised, "C")).median() == pytest.approx(1, abs=0.5)


def test_centre_mean_gap_by_hand():
    table = pd.DataFrame({"f": [1.0, 3.0, 5.0, 7.0], "flat": [2.0, 2.0, 4.0, 4.0]})
    gap = hm.centre_mean_gap(table, ["A", "A", "B", "B"])
    # Means 2 and 6; within-centre squared deviations 1+1+1+1 over 4 - 2 = 2 degrees of freedom.
    assert gap["f"] == pytest.approx(4 / np.sqrt(2), abs=1e-15)
    assert np.isnan(gap["flat"])


# ---------------------------------------------------------------------------------------------
# Features ComBat cannot divide by


def test_features_without_variance_in_some_centre_are_left_as_r_sva_combat_leaves_them():
    # harmonisation_flat.R: feature_6 constant within centre A, feature_7 the centre and nothing
    # else, feature_8 the same for everyone. sva leaves all three unadjusted and fits the rest
    # without them; neuroCombat would move feature_6 by up to a feature's SD.
    data = pd.read_csv(REFERENCE / "harmonisation_flat_data.csv", index_col="patient")
    r = json.loads((REFERENCE / "harmonisation_flat_r.json").read_text())
    features = data.filter(like="feature_")
    plain, model = hm.combat_transductive(features, data["centre"])
    assert model.unadjusted == ("feature_6", "feature_7", "feature_8")
    assert np.allclose(plain.to_numpy(), np.array(r["combat"]), rtol=0, atol=1e-12)
    with_covariates, _ = hm.combat_transductive(features, data["centre"], data[["sex", "age"]])
    assert np.allclose(with_covariates.to_numpy(), np.array(r["combat_sex_age"]), rtol=0, atol=1e-12)
    assert (plain[["feature_6", "feature_7", "feature_8"]] == features[["feature_6", "feature_7", "feature_8"]]).all().all()


def test_a_feature_constant_within_one_centre_is_no_longer_moved_as_neurocombat_moves_it():
    features, batch, _ = synthetic(seed=6)
    features.loc[batch == "C", "feature_3"] = 1.5  # constant in centre C only
    harmonised, model = hm.combat_transductive(features, batch)
    assert model.unadjusted == ("feature_3",)
    assert np.isfinite(harmonised.to_numpy()).all()
    assert (harmonised["feature_3"] == features["feature_3"]).all()
    # The other features are harmonised as if feature_3 were not there.
    rest = features.drop(columns="feature_3")
    without = package_combat(rest.to_numpy(), batch)["data"].T
    assert np.allclose(harmonised.drop(columns="feature_3").to_numpy(), without, rtol=0, atol=1e-10)


def test_an_unadjusted_feature_of_new_patients_keeps_their_own_values():
    features, batch, _ = synthetic(seed=7)
    features["centre_only"] = np.select([batch == "A", batch == "B"], [1.0, 2.0], 4.0)
    model = hm.fit_combat(features, batch)
    new = features.iloc[:5].copy()
    new["centre_only"] = [7.0, 8.0, 9.0, 10.0, 11.0]
    assert model.apply(new, batch[:5])["centre_only"].tolist() == [7.0, 8.0, 9.0, 10.0, 11.0]


# ---------------------------------------------------------------------------------------------
# Saved as plain JSON


def test_the_model_round_trips_through_plain_json(tmp_path):
    features, batch, covariates = synthetic(seed=8)
    train = training_split(batch)
    features["constant"] = 3.0
    model = hm.fit_combat(features[train], batch[train], covariates[train])
    path = model.save(tmp_path / "combat.json")
    text = path.read_text()
    assert json.loads(text)["kind"] == "combat"  # plain JSON numbers and names, nothing to unpickle
    loaded = hm.ComBatModel.load(path)
    new = features[~train]
    assert np.array_equal(loaded.apply(new, batch[~train], covariates[~train]).to_numpy(),
                          model.apply(new, batch[~train], covariates[~train]).to_numpy())
    assert loaded.categorical_levels == {"sex": ("F", "M")} and loaded.continuous == ("age",)
    (tmp_path / "broken.json").write_text(text[: len(text) // 2])
    with pytest.raises(CrcInputError, match="broken.json is damaged or not a ComBat model.*fit it again"):
        hm.ComBatModel.load(tmp_path / "broken.json")
    (tmp_path / "other.json").write_text(json.dumps({"mean": [0.0]}))
    with pytest.raises(CrcInputError, match="not a ComBat model"):
        hm.ComBatModel.load(tmp_path / "other.json")


# ---------------------------------------------------------------------------------------------
# Refusals


def test_refuses_a_single_centre():
    features, batch, _ = synthetic()
    with pytest.raises(CrcInputError, match="ComBat needs at least two centres; all 30 training patients are from centre 'A'"):
        hm.fit_combat(features[batch == "A"], batch[batch == "A"])


def test_refuses_a_centre_with_fewer_than_two_patients():
    features, batch, _ = synthetic()
    keep = (batch != "C") | (np.arange(batch.size) == np.flatnonzero(batch == "C")[0])
    with pytest.raises(CrcInputError, match=r"Centre\(s\) 'C' \(1\) have fewer than two training patients"):
        hm.fit_combat(features[keep], batch[keep])


def test_refuses_missing_features_naming_feature_and_patient():
    features, batch, _ = synthetic()
    features.loc["P004", "feature_2"] = np.nan
    with pytest.raises(CrcInputError, match=r"the feature 'feature_2' is missing or not a number for patient\(s\) P004"):
        hm.fit_combat(features, batch)
    text = synthetic()[0].astype(object)
    text.loc["P009", "feature_5"] = "n/a"
    with pytest.raises(CrcInputError, match=r"the feature 'feature_5' is missing or not a number for patient\(s\) P009"):
        hm.fit_combat(text, batch)
    clean, _, _ = synthetic()
    model = hm.fit_combat(clean, batch)
    with pytest.raises(CrcInputError, match="The features to harmonise: the feature 'feature_2' is missing"):
        model.apply(features, batch)


def test_refuses_missing_centres_and_unseen_ones():
    features, batch, _ = synthetic()
    centres = batch.astype(object)
    centres[5] = None
    with pytest.raises(CrcInputError, match=r"the centre is missing for patient\(s\) P005"):
        hm.fit_combat(features, centres)
    with pytest.raises(CrcInputError, match="75 patients but 74 centres"):
        hm.fit_combat(features, batch[1:])
    model = hm.fit_combat(features[batch != "C"], batch[batch != "C"])
    with pytest.raises(CrcInputError, match=r"Centre\(s\) 'C' had no training patients \(training centres: A, B\)"):
        model.apply(features, batch)


def test_refuses_centres_or_covariates_of_other_patients():
    features, batch, covariates = synthetic()
    shuffled = pd.Series(batch, index=features.index).iloc[::-1]
    with pytest.raises(CrcInputError, match="the centres are not given for the features' patients in the features' order"):
        hm.fit_combat(features, shuffled)
    others = covariates.set_axis([f"Q{i}" for i in range(len(covariates))])
    with pytest.raises(CrcInputError, match=r"the covariates are not given for the features' patients.*\['Q0', 'Q1', 'Q10'\]"):
        hm.fit_combat(features, batch, others)
    # Plain arrays are matched by position.
    assert np.allclose(hm.fit_combat(features, batch, covariates.to_numpy()[:, :1].astype(float)).gamma_star,
                       hm.fit_combat(features, batch, covariates[["age"]]).gamma_star, rtol=0, atol=0)


def test_refuses_other_features_on_apply():
    features, batch, _ = synthetic()
    model = hm.fit_combat(features, batch)
    with pytest.raises(CrcInputError, match=r"1 feature\(s\) of the training table are missing \(feature_9\)"):
        model.apply(features.drop(columns="feature_9"), batch)
    with pytest.raises(CrcInputError, match=r"1 were not in it \(new\)"):
        model.apply(features.assign(new=1.0), batch)


def test_refuses_bad_covariates():
    features, batch, covariates = synthetic()
    with pytest.raises(CrcInputError, match="covariate 'site' is confounded with the centre"):
        hm.fit_combat(features, batch, covariates.assign(site=batch))
    with pytest.raises(CrcInputError, match="covariate 'scanner_age' is confounded with the centre"):
        hm.fit_combat(features, batch, covariates.assign(scanner_age=np.select([batch == "A"], [3.0], 5.0)))
    gaps = covariates.copy()
    gaps.loc["P007", "age"] = np.nan
    with pytest.raises(CrcInputError, match=r"the covariate 'age' is missing for patient\(s\) P007"):
        hm.fit_combat(features, batch, gaps)
    model = hm.fit_combat(features, batch, covariates)
    with pytest.raises(CrcInputError, match="fitted with the covariates sex, age: give them for these patients too"):
        model.apply(features, batch)
    with pytest.raises(CrcInputError, match=r"'sex' has level\(s\) 'X' that no training patient had"):
        model.apply(features, batch, covariates.assign(sex="X"))


def test_refuses_fewer_than_two_varying_features():
    features, batch, _ = synthetic(n_features=2)
    features["feature_1"] = 1.0
    with pytest.raises(CrcInputError, match=r"Only 1 feature\(s\) vary within every centre"):
        hm.fit_combat(features, batch)


# ---------------------------------------------------------------------------------------------
# Before a run is written: what ComBat would refuse about the centres alone


def test_check_centres_refuses_what_fit_and_apply_would():
    centres = np.array(["A", "A", "B", "B", "C"])
    train = np.array([True, True, True, True, False])
    fine = [(train, [train])]
    hm.check_centres(centres, fine)
    with pytest.raises(CrcInputError, match=r"Centre\(s\) 'C' had no training patients"):
        hm.check_centres(centres, [(train, [~train])])
    with pytest.raises(CrcInputError, match=r"Centre\(s\) 'C' \(1\) have fewer than two training patients"):
        hm.check_centres(centres, [(train, [~train])], transductive=True)  # fitted on everyone it predicts
    with pytest.raises(CrcInputError, match=r"ComBat needs at least two centres; all 2 training patients are from centre 'A'"):
        hm.check_centres(centres, [(np.array([True, True, False, False, False]), [])])
    clinical = pd.DataFrame({"patient_id": ["P1", "P2"], "centre": ["A", None]})
    with pytest.raises(CrcInputError, match=r"1 patient\(s\) have no 'centre': P2"):
        hm.patient_centres(clinical, "centre", ["P1", "P2"])
    with pytest.raises(CrcInputError, match=r"the clinical table has no 'site' column"):
        hm.patient_centres(clinical, "site", ["P1"])
    assert hm.patient_centres(clinical, "centre", ["P1"]).tolist() == ["A"]


def _tree(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): (p.stat().st_size if p.is_file() else -1) for p in sorted(root.rglob("*"))}


def test_train_refuses_unusable_centres_before_writing_a_run_or_features(training_workspace, capsys):
    pytest.importorskip("torch")
    from crc_core.cli import main

    clinical = pd.read_csv(training_workspace / "clinical.csv")
    train = clinical["split"].eq("train").to_numpy()
    one_validation = np.flatnonzero(~train)[0]
    cases = [
        (None, [], "the clinical table has no 'centre' column"),
        (None, ["--centre-column", "site"], "the clinical table has no 'site' column"),
        (np.full(len(clinical), "Lanzhou"), [], "ComBat needs at least two centres"),
        (np.where(np.arange(len(clinical)) == np.flatnonzero(train)[0], "Wuhan", "Lanzhou"), [],
         r"Centre\(s\) 'Wuhan' \(1\) have fewer than two training patients"),
        (np.where(np.arange(len(clinical)) == one_validation, "Wuhan", np.where(np.arange(len(clinical)) % 2, "A", "B")), [],
         r"Centre\(s\) 'Wuhan' had no training patients"),
        # A clinical column named as the centre, as a messy table has it: one patient without a value.
        (clinical["sex"].mask(np.arange(len(clinical)) == 3), ["--centre-column", "sex"],
         rf"1 patient\(s\) have no 'sex': {clinical['patient_id'][3]}"),
    ]
    for centres, flags, message in cases:
        table = clinical.copy()
        if centres is not None:
            table[flags[1] if flags else "centre"] = centres
        table.to_csv(training_workspace / "clinical.csv", index=False)
        before = _tree(training_workspace)
        rc = main(["--workspace", str(training_workspace), "train", "--harmonise", "training", "--weights", "random",
                   "--device", "cpu", *flags])
        err = capsys.readouterr().err
        assert rc == 2 and err.startswith("crc-time: error: ") and __import__("re").search(message, err), err
        assert _tree(training_workspace) == before
        assert not (training_workspace / "runs").exists() and not (training_workspace / "features").exists()
