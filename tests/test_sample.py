"""The built-in sample cohort: shape, determinism, realism of values and images, learnability."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from crc_core.errors import CrcInputError
from crc_core.sample.cohort import (
    LAB_QUARTILES,
    SampleConfig,
    build_sample_workspace,
    generate_tables,
)

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tables():
    return generate_tables(SampleConfig())


def test_default_cohort_has_the_papers_shape(tables):
    clinical, pathology = tables.clinical, tables.pathology
    assert len(clinical) == len(pathology) == 315
    assert clinical["split"].value_counts().to_dict() == {"train": 220, "validation": 95}
    assert clinical["patient_id"].is_unique
    assert list(clinical["patient_id"]) == list(pathology["patient_id"])
    for column in ["sex", "age", "age_group", "pT", "pN", "TC", *LAB_QUARTILES]:
        assert column in clinical.columns, column
    assert set(clinical["sex"]) == {"F", "M"}
    assert set(clinical["pT"]) == {"T1", "T2", "T3", "T4"}
    assert set(clinical["pN"]) == {"N0", "N1", "N2"}


def test_pathology_readings_use_the_papers_scales(tables):
    pathology = tables.pathology
    for column in ("tsr_percent", "tsr_percent_r2"):
        values = pathology[column]
        assert values.between(10, 90).all() and (values % 10 == 0).all()
    for column in ("til_grade", "til_grade_r2"):
        assert set(pathology[column]) <= {0, 1, 2, 3}
    for marker in ("cd3_ca", "cd3_im", "cd8_ca", "cd8_im"):
        assert (pathology[marker] > 0).all()
    # Both classes of every paper label are well represented.
    assert 0.25 < (pathology["tsr_percent"] > 50).mean() < 0.6
    assert 0.25 < (pathology["til_grade"] >= 2).mean() < 0.6


def test_second_readers_agree_mostly_but_not_always(tables):
    pathology = tables.pathology
    for item in ("tsr_percent", "til_grade"):
        agree = (pathology[item] == pathology[f"{item}_r2"]).mean()
        assert 0.6 < agree < 0.98, (item, agree)


def test_laboratory_values_follow_the_papers_table_one(tables):
    clinical = tables.clinical
    for name, (median, q1, q3, _) in LAB_QUARTILES.items():
        observed = clinical[name].dropna().astype(float)
        # 315 draws: the median lands within a third of the IQR of the paper's median.
        assert abs(observed.median() - median) < (q3 - q1) / 3 + 0.01, name
    assert clinical["D-dimer"].isna().sum() > 0  # missing values exist, as in real tables
    assert abs(clinical["TC"].mean() - 4.4) < 0.25


def test_same_seed_gives_the_same_cohort_and_another_seed_does_not():
    first = generate_tables(SampleConfig(n_patients=40, seed=7))
    again = generate_tables(SampleConfig(n_patients=40, seed=7))
    other = generate_tables(SampleConfig(n_patients=40, seed=8))
    pd.testing.assert_frame_equal(first.clinical, again.clinical)
    pd.testing.assert_frame_equal(first.pathology, again.pathology)
    assert not first.pathology.equals(other.pathology)


def test_a_patient_does_not_depend_on_cohort_size():
    small = generate_tables(SampleConfig(n_patients=20, seed=3)).pathology
    large = generate_tables(SampleConfig(n_patients=60, seed=3)).pathology
    pd.testing.assert_frame_equal(small.iloc[:20], large.iloc[:20])


@pytest.mark.parametrize(
    "kwargs",
    [{"n_patients": 5}, {"n_patients": 10_000}, {"train_fraction": 0.95}, {"seed": -1}, {"workers": 0}],
)
def test_impossible_configs_are_refused_with_a_message(kwargs):
    with pytest.raises(CrcInputError):
        SampleConfig(**kwargs)


def test_committed_sample_tables_match_the_generator(tables):
    committed = REPO_ROOT / "data" / "sample"
    for name, frame in (("clinical.csv", tables.clinical), ("pathology.csv", tables.pathology)):
        on_disk = pd.read_csv(committed / name)
        fresh = pd.read_csv(pd.io.common.StringIO(frame.to_csv(index=False)))
        pd.testing.assert_frame_equal(on_disk, fresh, check_dtype=False)


def test_images_render_identically_with_one_or_two_workers(tmp_path):
    one = build_sample_workspace(tmp_path / "one", SampleConfig(n_patients=10, seed=5, workers=1))
    two = build_sample_workspace(tmp_path / "two", SampleConfig(n_patients=10, seed=5, workers=2))
    for relative in pd.read_csv(one.manifest_csv)["image"]:
        assert (one.root / relative).read_bytes() == (two.root / relative).read_bytes()


def test_rebuilding_removes_labels_of_the_previous_cohort(tmp_path):
    workspace = build_sample_workspace(tmp_path / "ws", SampleConfig(n_patients=12, with_images=False))
    workspace.labels_csv.write_text("patient_id,tsr_high\nCRC001,1\n")
    build_sample_workspace(tmp_path / "ws", SampleConfig(n_patients=12, seed=1, with_images=False))
    assert not workspace.labels_csv.exists()
    assert not workspace.manifest_csv.exists()


# ---------------------------------------------------------------------------------------------
# Images of the session's sample workspace


def _load(path: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    image = nib.load(str(path))
    return np.asarray(image.dataobj), tuple(float(z) for z in image.header.get_zooms())


def test_every_manifest_entry_is_a_plausible_ct_with_two_masks(sample_workspace):
    manifest = pd.read_csv(sample_workspace / "manifest.csv")
    assert len(manifest) == 315
    for _, row in manifest.iloc[::45].iterrows():
        ct, zooms = _load(sample_workspace / row["image"])
        assert ct.dtype == np.int16 and ct.shape[0] >= 128 and ct.shape[1] >= 128
        assert zooms[2] == 5.0 and 0.6 <= zooms[0] <= 0.9 and zooms[0] == zooms[1]
        assert ct.min() <= -900 and ct.max() >= 300  # air and bone are present
        for column in ("mask", "mask_r2"):
            mask, mask_zooms = _load(sample_workspace / row[column])
            assert mask.shape == ct.shape and mask_zooms == zooms
            assert set(np.unique(mask)) == {0, 1}
            tumour_hu = ct[mask.astype(bool)].astype(float)
            assert 0 < np.median(tumour_hu) < 90  # soft tissue, not fat or air


def test_the_two_readers_outlines_agree_like_radiologists(sample_workspace):
    manifest = pd.read_csv(sample_workspace / "manifest.csv")
    dice = []
    for _, row in manifest.iloc[::10].iterrows():
        first = _load(sample_workspace / row["mask"])[0].astype(bool)
        second = _load(sample_workspace / row["mask_r2"])[0].astype(bool)
        dice.append(2 * (first & second).sum() / (first.sum() + second.sum()))
    assert 0.8 <= np.median(dice) <= 0.95, np.median(dice)
    assert min(dice) > 0.6


def _largest_slice_features(ct: np.ndarray, mask: np.ndarray) -> list[float]:
    """A few hand-made texture features of the largest ROI cross-section, for a plain check."""
    z = int(np.argmax(mask.sum(axis=(0, 1))))
    image, roi = ct[:, :, z].astype(float), mask[:, :, z].astype(bool)
    core = ndimage.binary_erosion(roi, iterations=3)
    core = core if core.sum() > 20 else roi
    smooth = ndimage.gaussian_filter(image, 1.0)
    band = smooth - ndimage.gaussian_filter(image, 2.5)
    rim = image[roi & ~core].mean() - image[core].mean() if (roi & ~core).any() else 0.0
    return [image[core].mean(), image[core].std(), np.log(band[core].std() + 1e-3), rim]


@pytest.mark.slow
def test_labels_are_learnable_from_the_images_but_not_perfectly(sample_workspace):
    manifest = pd.read_csv(sample_workspace / "manifest.csv")
    clinical = pd.read_csv(sample_workspace / "clinical.csv")
    pathology = pd.read_csv(sample_workspace / "pathology.csv")
    features = np.array(
        [
            _largest_slice_features(
                _load(sample_workspace / row["image"])[0], _load(sample_workspace / row["mask"])[0]
            )
            for _, row in manifest.iterrows()
        ]
    )
    train = (clinical["split"] == "train").to_numpy()
    labels = {
        "TSR > 50%": (pathology["tsr_percent"] > 50).to_numpy(),
        "TIL grade 2-3": (pathology["til_grade"] >= 2).to_numpy(),
    }
    for name, target in labels.items():
        model = make_pipeline(StandardScaler(), LogisticRegression()).fit(features[train], target[train])
        auc = roc_auc_score(target[~train], model.predict_proba(features[~train])[:, 1])
        assert 0.65 <= auc <= 0.97, (name, auc)


def test_same_seed_writes_byte_identical_tables(tmp_path):
    config = SampleConfig(n_patients=30, seed=4, with_images=False)
    first = build_sample_workspace(tmp_path / "a", config)
    second = build_sample_workspace(tmp_path / "b", config)
    for name in ("clinical.csv", "pathology.csv", "sample.json"):
        assert (first.root / name).read_bytes() == (second.root / name).read_bytes(), name


def test_an_external_centre_is_other_patients_on_another_scanner_with_another_case_mix(tmp_path):
    """`sample --centre`: a second hospital's cohort, as a real external validation meets it."""
    from crc_core.sample.cohort import CENTRE, DEVELOPMENT_MARKER_MEDIANS, SampleConfig, build_sample_workspace, generate_tables

    home, away = generate_tables(SampleConfig(n_patients=600)), generate_tables(SampleConfig(n_patients=600, centre="Lanzhou"))
    assert away.clinical["patient_id"].iloc[0] == "LAN001" and set(away.clinical["split"]) == {"external"}
    assert set(away.clinical["centre"]) == {"Lanzhou"}
    # Other people: not the study's patients under new names.
    assert not np.allclose(home.traits["stroma"], away.traits["stroma"])
    # Another case mix: more stroma, less infiltrate, more advanced tumours.
    assert away.traits["stroma"].mean() - home.traits["stroma"].mean() == pytest.approx(CENTRE.stroma_shift, abs=0.15)
    assert away.traits["immune"].mean() - home.traits["immune"].mean() == pytest.approx(CENTRE.immune_shift, abs=0.15)
    assert (away.clinical["pT"] == "T4").mean() > (home.clinical["pT"] == "T4").mean()
    # Another scanner: noisier, thinner slices, shifted HU.
    assert away.traits["noise_hu"].min() >= CENTRE.noise_hu[0] > home.traits["noise_hu"].max()
    assert set(away.traits["slice_mm"]) == {CENTRE.slice_mm} and set(away.traits["hu_offset"]) == {CENTRE.hu_offset}
    assert generate_tables(SampleConfig(n_patients=600, centre="Lanzhou")).clinical.equals(away.clinical)
    assert not generate_tables(SampleConfig(n_patients=600, centre="Xian")).traits["stroma"].equals(away.traits["stroma"])

    workspace = build_sample_workspace(tmp_path / "lanzhou", SampleConfig(n_patients=12, centre="Lanzhou", workers=1))
    labels = json.loads(workspace.labels_json.read_text())
    # Labelled by the development cohort's rules: its marker cut-offs, never this centre's medians.
    assert labels["config"]["is_cutoff_source"] == "given"
    assert labels["config"]["marker_cutoffs"] == DEVELOPMENT_MARKER_MEDIANS
    assert json.loads(workspace.sample_json.read_text())["differs"]["hu_offset"] == CENTRE.hu_offset
    import SimpleITK as sitk

    volume = sitk.ReadImage(str(workspace.root / "images" / "LAN001_ct.nii.gz"))
    assert volume.GetSpacing()[2] == pytest.approx(CENTRE.slice_mm)
    with pytest.raises(CrcInputError, match="Name the centre with letters or digits"):
        SampleConfig(centre="--")


def test_a_page_builds_a_centre_only_where_nothing_of_the_user_is_replaced(tmp_path):
    from crc_core.sample.cohort import check_centre_folder, sample_centre

    home = tmp_path / "home"
    build_sample_workspace(home, SampleConfig(n_patients=20, with_images=False))
    with pytest.raises(CrcInputError, match="is the workspace open now"):
        check_centre_folder(home, str(home) + "/")
    with pytest.raises(CrcInputError, match="Give a folder"):
        check_centre_folder(home, "  ")
    own = tmp_path / "own"
    own.mkdir()
    (own / "clinical.csv").write_text("patient_id,split\nP1,train\n")
    (own / "pathology.csv").write_text("patient_id,tsr_percent\nP1,40\n")
    with pytest.raises(CrcInputError, match="holds files that are not a sample centre"):
        check_centre_folder(home, own)
    raw = tmp_path / "raw"
    (raw / "images").mkdir(parents=True)
    (raw / "images" / "P1_ct.nii.gz").write_bytes(b"scan")  # a user's own volumes, never deleted by a rebuild
    with pytest.raises(CrcInputError, match="holds files that are not a sample centre"):
        check_centre_folder(home, raw)
    with pytest.raises(CrcInputError, match="is a file"):
        check_centre_folder(home, raw / "images" / "P1_ct.nii.gz")
    with pytest.raises(CrcInputError, match="lies inside the workspace open now"):
        check_centre_folder(home, home / "crops")
    other_home = tmp_path / "other-home"
    build_sample_workspace(other_home, SampleConfig(n_patients=20, with_images=False))
    with pytest.raises(CrcInputError, match="not a sample centre"):
        check_centre_folder(other_home, home)  # another sample's development cohort, with its runs, is kept too
    centre = tmp_path / "centre"
    assert check_centre_folder(home, centre) == centre  # a new folder
    build_sample_workspace(centre, SampleConfig(n_patients=20, with_images=False, centre="Lanzhou"))
    assert check_centre_folder(home, centre) == centre  # an earlier centre is rebuilt
    assert sample_centre(centre) == "Lanzhou" and sample_centre(home) == "" and sample_centre(own) == ""


def test_a_rebuilt_sample_keeps_no_crops_of_the_patients_it_replaced(tmp_path):
    # Found in review: "Xian" built where "Lanzhou" was got predicted from Lanzhou's crops (the crop
    # set is keyed by the cutting parameters, not by the volumes).
    from crc_core.imaging.volumes import PreprocessConfig
    from crc_core.imaging.preprocess import preprocess_cohort

    centre = tmp_path / "centre"
    build_sample_workspace(centre, SampleConfig(n_patients=12, workers=1, centre="Lanzhou"))
    preprocess_cohort(centre, PreprocessConfig(size=32), workers=1, set_in_use=False)
    (centre / "features").mkdir()
    assert any((centre / "crops").iterdir())
    build_sample_workspace(centre, SampleConfig(n_patients=12, workers=1, centre="Xian"))
    assert not (centre / "crops").exists() and not (centre / "features").exists()
    assert pd.read_csv(centre / "clinical.csv")["patient_id"].str.startswith("XIA").all()


@pytest.mark.parametrize("blank", ["", "   "])
def test_a_blank_centre_name_is_refused_not_taken_for_the_development_sample(tmp_path, capsys, blank):
    from crc_core.cli import main

    target = tmp_path / "centre"
    with pytest.raises(SystemExit) as exited:
        main(["--workspace", str(target), "sample", "--centre", blank, "--n", "12", "--no-images"])
    assert exited.value.code == 2
    assert "argument --centre: name the centre, e.g. --centre Lanzhou" in capsys.readouterr().err
    assert not target.exists()
    if blank:
        with pytest.raises(CrcInputError, match="Name the centre with letters or digits"):
            SampleConfig(centre=blank)
    assert SampleConfig(centre="").centre == ""  # the default: the development sample


def test_a_second_centre_defaults_outside_the_program_folder_and_is_refused_inside_it(tmp_path):
    from crc_core.sample.cohort import check_centre_folder, default_centre_folder
    from crc_core.workspace import lies_within, program_folder

    program = program_folder()
    assert program is not None and (program / "crc_core").is_dir()  # the tests run from a checkout
    # Beside a workspace of the user's own, as before.
    assert default_centre_folder(tmp_path / "study", "Lanzhou") == (tmp_path / "study-lanzhou").resolve()
    assert default_centre_folder(tmp_path / "study", "St. Anne's") == (tmp_path / "study-st-anne-s").resolve()
    # The checkout's ./workspace: beside the program folder, not inside it.
    away = default_centre_folder(program / "workspace", "Lanzhou")
    assert away == program.parent / f"{program.name}-workspace-lanzhou" and not lies_within(away, program)
    inside = program / "workspace-lanzhou-test"
    with pytest.raises(CrcInputError, match=r"lies inside the CRC-TIME program folder .*Choose a folder outside it, e\.g\. "
                                            + str(away).replace(".", r"\.")):
        check_centre_folder(program / "workspace", inside, "Lanzhou")
    assert not inside.exists()


def test_the_cli_builds_a_centre_beside_the_default_workspace_never_over_it_nor_in_the_program(tmp_path, monkeypatch,
                                                                                               capsys):
    from crc_core.cli import main
    from crc_core.workspace import WORKSPACE_ENV, program_folder

    development = tmp_path / "dev"
    monkeypatch.setenv(WORKSPACE_ENV, str(development))
    assert main(["sample", "--n", "12", "--no-images"]) == 0
    before = sorted(p.name for p in development.iterdir())
    assert main(["sample", "--centre", "Lanzhou", "--n", "12", "--no-images"]) == 0
    assert f"written to {(tmp_path / 'dev-lanzhou').resolve()}:" in capsys.readouterr().out
    assert pd.read_csv(tmp_path / "dev-lanzhou" / "clinical.csv")["patient_id"].str.startswith("LAN").all()
    assert sorted(p.name for p in development.iterdir()) == before
    assert pd.read_csv(development / "clinical.csv")["patient_id"].str.startswith("CRC").all()  # still the development sample
    inside = program_folder() / "centre-built-by-a-test"
    assert main(["--workspace", str(inside), "sample", "--centre", "Lanzhou", "--n", "12", "--no-images"]) == 2
    assert "lies inside the CRC-TIME program folder" in capsys.readouterr().err
    assert not inside.exists()
