"""Two readers: Dice, HD95, ICC(2,1) against Shrout & Fleiss and by hand, PyRadiomics features."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from scipy import stats

from crc_core.imaging import agreement
from crc_core.cli import main as cli_main
from crc_core.errors import CrcInputError
from crc_core.imaging.reader_study import read_reader_study, reader_agreement
from crc_core.workspace import Workspace

# Shrout & Fleiss (1979), Table 2: 6 targets rated by 4 judges.
SHROUT_FLEISS = [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]]


def test_icc_reproduces_shrout_and_fleiss_with_psych_confidence_interval():
    # Shrout & Fleiss: ICC(2,1) = 0.29; R psych::ICC prints ICC2 0.29 [0.019, 0.76].
    value, low, high = agreement.icc(SHROUT_FLEISS)
    assert value == pytest.approx(0.29, abs=0.005)
    assert low == pytest.approx(0.019, abs=0.0005)
    assert high == pytest.approx(0.76, abs=0.005)


def test_icc_equals_the_two_way_anova_formula_by_hand():
    rng = np.random.default_rng(0)
    subjects = rng.normal(0, 3, 30)
    x = np.column_stack([subjects + rng.normal(0, 1, 30), subjects + 0.5 + rng.normal(0, 1, 30)])
    n, k = x.shape
    grand = x.mean()
    msr = k * ((x.mean(1) - grand) ** 2).sum() / (n - 1)
    msc = n * ((x.mean(0) - grand) ** 2).sum() / (k - 1)
    mse = (((x - x.mean(1, keepdims=True) - x.mean(0, keepdims=True) + grand) ** 2).sum()) / ((n - 1) * (k - 1))
    expected = (msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n)
    value, low, high = agreement.icc(x)
    assert value == pytest.approx(expected, rel=1e-12)
    assert low < value < high


def test_icc_drops_incomplete_rows_and_refuses_too_little():
    with_gap = np.array(SHROUT_FLEISS + [[np.nan, 1, 2, 3]], dtype=float)
    assert agreement.icc(with_gap) == pytest.approx(agreement.icc(SHROUT_FLEISS))
    with pytest.raises(CrcInputError, match="at least 2 subjects"):
        agreement.icc([[1, 2]])
    assert all(math.isnan(v) for v in agreement.icc([[3, 3], [3, 3]]))
    assert agreement.icc([[1, 1], [2, 2], [5, 5]]) == (1.0, 1.0, 1.0)
    # Readers differing by a constant on identical subjects: psych::ICC gives (0 - 0) / (k MSC / n) = 0.
    assert agreement.icc([[1, 2], [1, 2], [1, 2]])[0] == 0.0
    with pytest.raises(CrcInputError, match="alpha"):
        agreement.icc(SHROUT_FLEISS, alpha=1.5)


def _psych_icc2(x: np.ndarray, alpha: float) -> tuple[float, float, float]:
    # psych::ICC's own route to the CI: Satterthwaite's df written through ICC and F_j = MSJ / MSE
    # (Shrout & Fleiss 1979, eq. 10), algebraically equal to McGraw & Wong's a, b form.
    n, k = x.shape
    grand = x.mean()
    msb = k * ((x.mean(1) - grand) ** 2).sum() / (n - 1)
    msj = n * ((x.mean(0) - grand) ** 2).sum() / (k - 1)
    mse = ((x - x.mean(1, keepdims=True) - x.mean(0, keepdims=True) + grand) ** 2).sum() / ((n - 1) * (k - 1))
    rho = (msb - mse) / (msb + (k - 1) * mse + k * (msj - mse) / n)
    fj = msj / mse
    v = ((k - 1) * (n - 1) * (k * rho * fj + n * (1 + (k - 1) * rho) - k * rho) ** 2
         / ((n - 1) * k**2 * rho**2 * fj**2 + (n * (1 + (k - 1) * rho) - k * rho) ** 2))
    f_u, f_l = stats.f.ppf(1 - alpha / 2, n - 1, v), stats.f.ppf(1 - alpha / 2, v, n - 1)
    low = n * (msb - f_u * mse) / (f_u * (k * msj + (k * n - k - n) * mse) + n * msb)
    high = n * (f_l * msb - mse) / (k * msj + (k * n - k - n) * mse + n * f_l * msb)
    return rho, low, high


@pytest.mark.parametrize("alpha", [0.05, 0.1])
def test_icc_interval_equals_psych_form_on_random_tables_and_dataframes(alpha):
    rng = np.random.default_rng(7)
    for _ in range(25):
        n, k = int(rng.integers(3, 30)), int(rng.integers(2, 5))
        x = rng.normal(0, 2, (n, 1)) + rng.normal(0, 1, (1, k)) + rng.normal(0, 1, (n, k))
        assert agreement.icc(pd.DataFrame(x), alpha=alpha) == pytest.approx(_psych_icc2(x, alpha), rel=1e-9)
    narrower = agreement.icc(SHROUT_FLEISS, alpha=0.5)
    wider = agreement.icc(SHROUT_FLEISS, alpha=0.01)
    assert wider[1] < narrower[1] < narrower[2] < wider[2]


def test_dice_by_counting():
    a = np.zeros((4, 10, 10), bool)
    b = np.zeros_like(a)
    a[1:3, 2:6, 2:6] = True  # 32 voxels
    b[1:3, 4:8, 2:6] = True  # 32 voxels, 16 shared
    assert agreement.dice(a, b) == pytest.approx(2 * 16 / 64)
    assert agreement.dice(np.zeros((2, 2)), np.zeros((2, 2))) == 1.0
    with pytest.raises(CrcInputError, match="differ in shape"):
        agreement.dice(a, b[:2])


def test_hd95_of_a_shifted_cube_is_the_shift_in_mm():
    a = np.zeros((20, 20, 20), bool)
    a[5:12, 5:12, 5:12] = True
    b = np.roll(a, 2, axis=2)  # 2 voxels along x at 0.5 mm → 1 mm
    hd = agreement.hausdorff95(a, b, spacing=(5.0, 0.5, 0.5))
    assert hd == pytest.approx(1.0)
    assert agreement.hausdorff95(a, a, (1, 1, 1)) == 0.0
    assert math.isnan(agreement.hausdorff95(a, np.zeros_like(a), (1, 1, 1)))


def test_hd95_equals_brute_force_pairwise_distances_on_irregular_masks():
    # Independent of distance transforms: every surface voxel's nearest opposite surface voxel by
    # scipy's cdist on physical coordinates, pooled both ways, 95th percentile (MedPy's hd95).
    from scipy import ndimage
    from scipy.spatial.distance import cdist

    rng = np.random.default_rng(4)
    cross = ndimage.generate_binary_structure(3, 1)
    for _ in range(5):
        a = ndimage.binary_opening(rng.random((6, 24, 24)) < 0.6)
        b = ndimage.binary_opening(rng.random((6, 24, 24)) < 0.6)
        spacing = (5.0, float(rng.uniform(0.5, 1.0)), float(rng.uniform(0.5, 1.0)))
        points = [np.argwhere(m ^ ndimage.binary_erosion(m, cross)) * np.array(spacing) for m in (a, b)]
        d = cdist(points[0], points[1])
        expected = np.percentile(np.concatenate([d.min(1), d.min(0)]), 95)
        assert agreement.hausdorff95(a, b, spacing) == pytest.approx(expected, rel=1e-12)


def test_mask_agreement_volumes_in_ml():
    a = np.zeros((4, 10, 10), bool)
    a[:2, :5, :5] = True  # 50 voxels of 5 × 1 × 1 mm = 250 mm³
    result = agreement.mask_agreement(a, a, (5.0, 1.0, 1.0))
    assert result["volume_r1_ml"] == pytest.approx(0.25)
    assert result["dice"] == 1.0


def test_paired_wilcoxon_equals_scipy_and_identical_readers_give_one():
    rng = np.random.default_rng(1)
    a = rng.normal(size=20)
    b = a + rng.normal(0.3, 0.5, 20)
    assert agreement.paired_wilcoxon(a, b) == pytest.approx(stats.wilcoxon(a, b).pvalue)
    assert agreement.paired_wilcoxon(a, a) == 1.0


def test_feature_agreement_table_and_share_reliable():
    rng = np.random.default_rng(2)
    truth = rng.normal(10, 3, (12, 3))
    r1 = pd.DataFrame(truth, columns=["stable", "noisy", "constant"], index=[f"P{i}" for i in range(12)])
    r2 = r1.copy()
    r2["stable"] += rng.normal(0, 0.1, 12)
    r2["noisy"] = rng.normal(10, 3, 12)
    r1["constant"] = r2["constant"] = 1.0
    table = agreement.feature_agreement(r1, r2).set_index("feature")
    assert table.loc["stable", "reliable"] and not table.loc["noisy", "reliable"]
    assert math.isnan(table.loc["constant", "icc"]) and not table.loc["constant", "reliable"]
    assert agreement.share_reliable(table.reset_index()) == pytest.approx(0.5)
    assert list(table.reset_index().columns) == list(agreement.FeatureAgreement.__dataclass_fields__)


def test_radiomics_first_order_mean_equals_numpy():
    pytest.importorskip("radiomics")
    rng = np.random.default_rng(3)
    hu = rng.normal(40, 20, (6, 40, 40)).astype(np.int16)
    roi = np.zeros((6, 40, 40), np.uint8)
    roi[1:5, 10:30, 12:28] = 1
    image, mask = sitk.GetImageFromArray(hu), sitk.GetImageFromArray(roi)
    for volume in (image, mask):
        volume.SetSpacing((0.7, 0.7, 5.0))
    features = agreement.radiomics_features(image, mask)
    assert features["original_firstorder_Mean"] == pytest.approx(hu[roi == 1].mean(), rel=1e-6)
    assert features["original_shape_VoxelVolume"] == pytest.approx(roi.sum() * 0.7 * 0.7 * 5.0)
    assert any(k.startswith("original_glszm_") for k in features)
    assert not any(k.startswith("diagnostics_") for k in features)


def _ellipsoid(radius_mm: float, centre_y: float, shape=(6, 40, 40), spacing=(5.0, 0.8, 0.8)) -> np.ndarray:
    z, y, x = np.indices(shape)
    return (((z - 2.5) * spacing[0]) ** 2 + ((y - centre_y) * spacing[1]) ** 2
            + ((x - 20) * spacing[2]) ** 2 <= radius_mm**2).astype(np.uint8)


def _images(hu: np.ndarray, roi: np.ndarray) -> tuple[sitk.Image, sitk.Image]:
    image = sitk.GetImageFromArray(hu)
    image.SetSpacing((0.8, 0.8, 5.0))  # x, y, z as SimpleITK orders it
    mask = sitk.GetImageFromArray(roi)
    mask.CopyInformation(image)
    return image, mask


def test_radiomics_shape_features_depend_on_the_mask_alone():
    pytest.importorskip("radiomics")
    rng = np.random.default_rng(8)
    roi = _ellipsoid(11.0, 20)
    first = agreement.radiomics_features(*_images(rng.normal(40, 20, roi.shape).astype(np.int16), roi))
    second = agreement.radiomics_features(*_images(rng.normal(90, 40, roi.shape).astype(np.int16), roi))
    shape = [k for k in first if k.startswith("original_shape_")]
    assert len(shape) > 10
    assert {k: first[k] for k in shape} == {k: second[k] for k in shape}
    assert first["original_firstorder_Mean"] != second["original_firstorder_Mean"]


def test_feature_agreement_of_radiomics_on_nearly_identical_masks_is_high():
    pytest.importorskip("radiomics")
    rng = np.random.default_rng(9)
    reader_1, reader_2 = {}, {}
    for p in range(8):
        hu = rng.normal(40 + 10 * p, 15 + 3 * p, (6, 40, 40)).astype(np.int16)
        radius = 7.0 + p
        # Reader 2's outline sits a third of a voxel off in y: Dice ≈ 0.98.
        roi_1, roi_2 = _ellipsoid(radius, 20.0), _ellipsoid(radius, 20.3)
        assert agreement.dice(roi_1, roi_2) > 0.95
        reader_1[f"P{p}"] = agreement.radiomics_features(*_images(hu, roi_1))
        reader_2[f"P{p}"] = agreement.radiomics_features(*_images(hu, roi_2))
    table = agreement.feature_agreement(pd.DataFrame(reader_1).T, pd.DataFrame(reader_2).T)
    assert len(table) == len(reader_1["P0"]) > 50
    assert agreement.share_reliable(table) >= 0.9
    assert (table["icc_low"] <= table["icc"]).all() and (table["icc"] <= table["icc_high"]).all()


def test_reader_study_on_the_sample_matches_its_documented_dice(imaging_workspace):
    patients = [f"CRC{i:03d}" for i in range(1, 9)]
    result = reader_agreement(imaging_workspace, patients=patients, workers=2)
    assert (result.masks["status"] == "ok").all()
    assert result.masks["dice"].between(0.75, 0.97).all()  # data/sample/README.md: readers differ, Dice ~0.85-0.9
    saved_masks, saved_features, summary = read_reader_study(Workspace(imaging_workspace))
    assert list(saved_masks["patient_id"]) == patients
    assert "median Dice" in summary
    if result.features is not None:
        assert len(saved_features) == len(result.features) > 50
        assert saved_features["feature"].str.startswith("original_shape_").any()


def test_reader_study_without_features_and_a_failing_patient(imaging_workspace, capsys):
    manifest = pd.read_csv(imaging_workspace / "manifest.csv")
    manifest.loc[1, "mask_r2"] = "masks/missing.nii.gz"
    manifest.to_csv(imaging_workspace / "manifest.csv", index=False)
    code = cli_main(["--workspace", str(imaging_workspace), "agreement", "--no-features", "--workers", "1"])
    assert code == 0
    out = capsys.readouterr().out
    assert "314 of 315 patients" in out and "failed: CRC002" in out


def test_reader_study_needs_a_second_reader(imaging_workspace):
    manifest = pd.read_csv(imaging_workspace / "manifest.csv").drop(columns="mask_r2")
    manifest.to_csv(imaging_workspace / "manifest.csv", index=False)
    with pytest.raises(CrcInputError, match="no second reader"):
        reader_agreement(imaging_workspace)


def test_damaged_agreement_files_are_named_with_what_to_do(imaging_workspace):
    from crc_core.imaging.reader_study import AgreementConfig

    reader_agreement(imaging_workspace, AgreementConfig(with_features=False), patients=["CRC001", "CRC002"], workers=1)
    folder = Workspace(imaging_workspace).agreement_dir
    assert AgreementConfig.load(folder / "config.json") == AgreementConfig(with_features=False)
    assert read_reader_study(Workspace(imaging_workspace))[1] is None
    (folder / "summary.json").write_text("{")
    with pytest.raises(CrcInputError, match=r"The reader agreement in .* is damaged .* Compute it again"):
        read_reader_study(Workspace(imaging_workspace))
    (folder / "summary.json").write_text('{"summary": "ok"}')
    (folder / "masks.csv").write_text("patient_id,dice\nCRC001,0.9\n")
    with pytest.raises(CrcInputError, match=r"damaged \(no column\(s\) status, message"):
        read_reader_study(Workspace(imaging_workspace))


def test_an_icc_of_a_constant_feature_is_nan_and_never_reliable():
    constant = pd.DataFrame({"original_firstorder_Minimum": [-1024.0] * 4}, index=list("abcd"))
    table = agreement.feature_agreement(constant, constant.copy())
    assert table["icc"].isna().all() and not table["reliable"].any()
