"""The built-in sample cohort: 315 synthetic patients shaped like the study's.

Nothing here comes from real patients. The generator draws, per patient, two hidden tumour traits
(``stroma`` and ``immune``, standard normal, correlated −0.3) and lets them drive both the
pathology readings and the CT texture (:mod:`crc_core.sample.phantom`), each through its own noise, so a
model can learn the labels from the images imperfectly, as in the paper (validation AUC roughly
0.75–0.9). Clinical variables follow the medians and quartiles of the paper's Table 1 and are
independent of the split, so Table 1 shows no imbalance beyond chance.

Every random draw comes from a generator seeded with ``[seed, patient index, stream]``, so a
patient's data do not depend on how many workers render the images or in which order.
See ``data/sample/README.md`` for the full generative model.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from crc_core.configs import JsonConfig
from crc_core.errors import CrcInputError
from crc_core.parallel import map_in_workers
from crc_core.cohort.splits import SplitConfig, make_split
from crc_core.workspace import (
    Workspace,
    atomic_write_csv,
    atomic_write_text,
    ensure_writable_dir,
    lies_within,
    program_folder,
)

Progress = Callable[[int, int], None]

IMAGES_DIR = "images"
MASKS_DIR = "masks"

# Random streams, one per purpose, so adding a draw to one never shifts another.
_STREAM_TRAITS, _STREAM_CLINICAL, _STREAM_PATHOLOGY, _STREAM_IMAGE = 0, 1, 2, 3

#: Laboratory values as (median, Q1, Q3, decimals) from the paper's Table 1 training column;
#: each is drawn log-normal with that median and interquartile range.
LAB_QUARTILES: dict[str, tuple[float, float, float, int]] = {
    "TP": (65.14, 61.60, 69.66, 2),
    "ALB": (38.55, 35.95, 41.65, 2),
    "ALP": (76.00, 61.27, 89.00, 0),
    "UREA": (5.33, 4.46, 6.43, 2),
    "CREA": (62.50, 53.53, 71.03, 1),
    "UA": (269.73, 229.00, 331.75, 0),
    "TG": (1.18, 0.93, 1.53, 2),
    "HDL-C": (0.95, 0.83, 1.11, 2),
    "LDL-C": (2.32, 1.90, 2.82, 2),
    "FBG": (2.96, 2.16, 3.57, 2),
    "D-dimer": (2.02, 0.75, 3.27, 2),
    "WBC": (5.75, 4.70, 7.10, 2),
    "NEUT": (3.26, 2.49, 4.48, 2),
    "Lym": (1.67, 1.14, 2.11, 2),
    "M": (0.46, 0.34, 0.56, 2),
    "E": (0.10, 0.06, 0.17, 2),
    "B": (0.03, 0.02, 0.04, 2),
    "RBC": (4.38, 3.96, 4.80, 2),
    "HB": (132.0, 117.25, 147.0, 0),
    "PLT": (208.0, 167.25, 251.0, 0),
    "BMI": (23.05, 20.82, 24.68, 2),
}
#: Total cholesterol is the one variable the paper reports as mean ± SD; drawn normal.
TC_MEAN_SD = (4.4, 1.0)
#: Share of missing values in the laboratory columns that have any.
MISSING_SHARE = {"D-dimer": 0.03, "FBG": 0.02, "UA": 0.01, "BMI": 0.01}

SEX_MALE_SHARE = 0.62
PT_STAGES = ("T1", "T2", "T3", "T4")
PN_STAGES = ("N0", "N1", "N2")
AGE_GROUPS = ("≤ 50 years", "51-65 years", "> 65 years")
MARKERS = ("cd3_ca", "cd3_im", "cd8_ca", "cd8_im")
#: log(cells/mm²) at which each marker's density is centred in the generator (its median when the
#: immune trait is 0), and so the development cohort's population median of each marker.
MARKER_BASE = {"cd3_ca": 6.0, "cd3_im": 6.4, "cd8_ca": 5.2, "cd8_im": 5.6}
DEVELOPMENT_MARKER_MEDIANS = {m: float(round(np.exp(b))) for m, b in MARKER_BASE.items()}


@dataclass(frozen=True)
class Centre:
    """How a second hospital differs from the study's own: its scanner (noise, a HU offset, thinner
    slices, a softer kernel, larger pixels) and its case mix (more stroma-rich, less infiltrated,
    more advanced tumours). The model meets all of it at once, as it would in a real external
    validation."""

    noise_hu: tuple[float, float] = (14.0, 22.0)
    hu_offset: float = 18.0
    slice_mm: float = 3.0
    n_slices: tuple[int, int] = (16, 25)
    pixel_mm: tuple[float, float] = (0.75, 0.95)
    blur_px: float = 1.1
    stroma_shift: float = 0.35
    immune_shift: float = -0.25
    t_stage_shift: float = 0.5


#: Every external centre of the sample differs this way (a documented, fixed difference).
CENTRE = Centre()
#: Patients of an external centre unless ``--n`` says otherwise.
CENTRE_PATIENTS = 120


@dataclass(frozen=True)
class SampleConfig(JsonConfig):
    """What sample cohort to build. Defaults give the paper's 315 patients, 220 / 95. With
    ``centre``, a second hospital's cohort instead (:class:`Centre`): 120 patients by default, all
    external, their IDs prefixed with the centre's initials."""

    n_patients: int | None = None
    seed: int = 0
    train_fraction: float = 0.7
    with_images: bool = True
    workers: int | None = None  # None: one per CPU core, at most 4
    centre: str = ""

    def __post_init__(self) -> None:
        given = str(self.centre or "")
        object.__setattr__(self, "centre", given.strip())
        # Only "" (the default) means the development sample: a name typed blank is refused.
        if given and not any(c.isalnum() for c in self.centre):
            raise CrcInputError(f"Name the centre with letters or digits (got {given!r}).")
        if self.n_patients is None:
            object.__setattr__(self, "n_patients", CENTRE_PATIENTS if self.centre else 315)
        if not isinstance(self.n_patients, (int, np.integer)) or self.n_patients < 10:
            raise CrcInputError(f"The sample needs at least 10 patients (got {self.n_patients}).")
        if self.n_patients > 5000:
            raise CrcInputError(f"The sample is capped at 5000 patients (got {self.n_patients}).")
        if not 0.1 <= self.train_fraction <= 0.9:
            raise CrcInputError(
                f"The training share must lie between 0.1 and 0.9 (got {self.train_fraction})."
            )
        if self.seed < 0:
            raise CrcInputError(f"The seed must be 0 or more (got {self.seed}).")
        if self.workers is not None and self.workers < 1:
            raise CrcInputError(f"Workers must be 1 or more (got {self.workers}).")


@dataclass(frozen=True)
class SampleTables:
    """The sample's tables, plus the hidden traits kept for tests and the documentation."""

    clinical: pd.DataFrame
    pathology: pd.DataFrame
    manifest: pd.DataFrame
    traits: pd.DataFrame  # patient_id, stroma, immune, tumour_radius_mm, pixel_mm, noise_hu, n_slices


def _rng(seed: int, index: int, stream: int, centre: str = "") -> np.random.Generator:
    # An external centre's patients are other people: its name enters every seed.
    import zlib

    return np.random.default_rng([seed, index, stream, zlib.crc32(centre.encode())] if centre else [seed, index, stream])


def centre_code(centre: str) -> str:
    """The prefix of a centre's patient IDs: its first three letters or digits, upper case."""
    return "".join(c for c in centre if c.isalnum())[:3].upper() or "EXT"


def patient_ids(n_patients: int, centre: str = "") -> list[str]:
    width = max(3, len(str(n_patients)))
    prefix = centre_code(centre) if centre else "CRC"
    return [f"{prefix}{i + 1:0{width}d}" for i in range(n_patients)]


def _draw_traits(config: SampleConfig, ids: list[str]) -> pd.DataFrame:
    rows = []
    external = bool(config.centre)
    for index, patient in enumerate(ids):
        rng = _rng(config.seed, index, _STREAM_TRAITS, config.centre)
        mean = [CENTRE.stroma_shift, CENTRE.immune_shift] if external else [0.0, 0.0]
        stroma, immune = rng.multivariate_normal(mean, [[1.0, -0.3], [-0.3, 1.0]])
        rows.append(
            {
                "patient_id": patient,
                "stroma": float(stroma),
                "immune": float(immune),
                "tumour_radius_mm": float(rng.uniform(12.0, 26.0)),
                "pixel_mm": float(np.round(rng.uniform(*(CENTRE.pixel_mm if external else (0.6, 0.9))), 4)),
                "noise_hu": float(rng.uniform(*(CENTRE.noise_hu if external else (6.0, 12.0)))),
                "n_slices": int(rng.integers(*(CENTRE.n_slices if external else (10, 15)))),
                "slice_mm": CENTRE.slice_mm if external else 5.0,
                "hu_offset": CENTRE.hu_offset if external else 0.0,
                "blur_px": CENTRE.blur_px if external else 0.7,
            }
        )
    return pd.DataFrame(rows)


def _lognormal(rng: np.random.Generator, median: float, q1: float, q3: float) -> float:
    # For a log-normal, Q3/Q1 = exp(2 · 0.6745 · sigma).
    sigma = np.log(q3 / q1) / (2 * 0.6744897501960817)
    return float(median * np.exp(sigma * rng.standard_normal()))


def _age_group(age: int) -> str:
    return AGE_GROUPS[0] if age <= 50 else AGE_GROUPS[1] if age <= 65 else AGE_GROUPS[2]


def _clinical_row(config: SampleConfig, index: int, traits: pd.Series) -> dict:
    rng = _rng(config.seed, index, _STREAM_CLINICAL, config.centre)
    age = int(np.clip(np.rint(rng.normal(63.0, 10.0)), 28, 90))
    # Bigger tumours invade deeper; stroma-rich tumours spread to nodes more often (the paper's
    # cited link between high TSR and poor outcome). Both effects are mild.
    size_z = (traits["tumour_radius_mm"] - 19.0) / 4.0
    t_score = 0.5 * size_z + rng.normal(0.0, 1.0) + (CENTRE.t_stage_shift if config.centre else 0.0)
    p_t = PT_STAGES[int(np.digitize(t_score, [-2.1, -0.75, 1.3]))]
    n_score = 0.3 * traits["stroma"] + rng.normal(0.0, 1.0)
    p_n = PN_STAGES[int(np.digitize(n_score, [-0.5, 0.33]))]
    row: dict = {
        "patient_id": traits["patient_id"],
        "sex": "M" if rng.uniform() < SEX_MALE_SHARE else "F",
        "age": age,
        "age_group": _age_group(age),
        "pT": p_t,
        "pN": p_n,
    }
    for name, (median, q1, q3, decimals) in LAB_QUARTILES.items():
        value = round(_lognormal(rng, median, q1, q3), decimals)
        row[name] = int(value) if decimals == 0 else value
        if name == "UA":  # the paper's column order: TC comes after UA
            row["TC"] = round(float(rng.normal(*TC_MEAN_SD)), 2)
    for name, share in MISSING_SHARE.items():
        if rng.uniform() < share:
            row[name] = np.nan
    return row


def _pathology_row(config: SampleConfig, index: int, traits: pd.Series) -> dict:
    rng = _rng(config.seed, index, _STREAM_PATHOLOGY, config.centre)
    stroma, immune = traits["stroma"], traits["immune"]
    # TSR: the field a pathologist picks adds sampling noise; scored 10-90% in steps of 10.
    tsr_true = 50.0 + 20.0 * (stroma + rng.normal(0.0, 0.55))

    def tsr_reading(noise_sd: float) -> int:
        return int(np.clip(np.rint((tsr_true + rng.normal(0.0, noise_sd)) / 10.0) * 10, 10, 90))

    til_true = immune + rng.normal(0.0, 0.45)

    def til_reading(noise_sd: float) -> int:
        return int(np.digitize(til_true + rng.normal(0.0, noise_sd), [-0.9, 0.2, 1.0]))

    # CD3+/CD8+ densities (cells/mm²) at core (CA) and invasive margin (IM): one shared immune
    # signal plus marker- and region-specific variation.
    shared = immune + rng.normal(0.0, 0.4)
    base = MARKER_BASE
    row: dict = {"patient_id": traits["patient_id"], "tsr_percent": tsr_reading(2.5), "til_grade": til_reading(0.15)}
    for marker in MARKERS:
        row[marker] = int(np.rint(np.exp(base[marker] + 0.8 * (shared + rng.normal(0.0, 0.45)))))
    row["tsr_percent_r2"] = tsr_reading(3.0)
    row["til_grade_r2"] = til_reading(0.2)
    return row


def generate_tables(config: SampleConfig | None = None) -> SampleTables:
    """The sample's clinical, pathology and manifest tables (no images). Fast: no disk access."""
    config = config or SampleConfig()
    ids = patient_ids(config.n_patients, config.centre)
    traits = _draw_traits(config, ids)
    clinical = pd.DataFrame([_clinical_row(config, i, row) for i, row in traits.iterrows()])
    for name, (*_, decimals) in LAB_QUARTILES.items():
        if decimals == 0:  # whole-number labs stay whole numbers in the CSV despite gaps
            clinical[name] = clinical[name].astype("Int64")
    if config.centre:  # every patient of another hospital is external validation
        clinical.insert(1, "split", "external")
        clinical.insert(2, "centre", config.centre)
    else:
        split = make_split(clinical, SplitConfig(train_fraction=config.train_fraction, seed=config.seed))
        clinical.insert(1, "split", split["split"].to_numpy())
    pathology = pd.DataFrame([_pathology_row(config, i, row) for i, row in traits.iterrows()])
    manifest = pd.DataFrame(
        {
            "patient_id": ids,
            "image": [f"{IMAGES_DIR}/{p}_ct.nii.gz" for p in ids],
            "mask": [f"{MASKS_DIR}/{p}_roi_r1.nii.gz" for p in ids],
            "mask_r2": [f"{MASKS_DIR}/{p}_roi_r2.nii.gz" for p in ids],
        }
    )
    return SampleTables(clinical, pathology, manifest, traits)


# ---------------------------------------------------------------------------------------------
# Images


def _nifti_bytes(volume_zyx: np.ndarray, spacing_xyz: tuple[float, float, float]) -> bytes:
    import nibabel as nib

    from crc_core.sample.phantom import to_nifti_array

    # The affine maps voxel (i, j, k) to RAS millimetres as scanners' DICOM-to-NIfTI converters
    # do for axial slices: x and y flipped from the LPS patient frame.
    sx, sy, sz = spacing_xyz
    affine = np.diag([-sx, -sy, sz, 1.0])
    image = nib.Nifti1Image(to_nifti_array(volume_zyx), affine)
    image.header.set_xyzt_units("mm")
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    return image.to_bytes()


def _gzip(data: bytes) -> bytes:
    import gzip

    # Level 1: the volumes are noisy, higher levels cost time and save little.
    return gzip.compress(data, compresslevel=1, mtime=0)


def _render_patient(task: tuple[int, dict, str, str]) -> str:
    """Worker: render one patient's CT and two masks into ``root``; returns the patient id."""
    from crc_core.sample.phantom import PhantomSpec, render

    seed, traits, root, centre = task
    index = int(traits["index"])
    spec = PhantomSpec(
        stroma=traits["stroma"],
        immune=traits["immune"],
        n_slices=int(traits["n_slices"]),
        pixel_mm=traits["pixel_mm"],
        slice_mm=float(traits.get("slice_mm", 5.0)),
        tumour_radius_mm=traits["tumour_radius_mm"],
        noise_hu=traits["noise_hu"],
        hu_offset=float(traits.get("hu_offset", 0.0)),
        blur_px=float(traits.get("blur_px", 0.7)),
    )
    phantom = render(spec, _rng(seed, index, _STREAM_IMAGE, centre))
    patient = traits["patient_id"]
    files = {
        f"{IMAGES_DIR}/{patient}_ct.nii.gz": phantom.ct,
        f"{MASKS_DIR}/{patient}_roi_r1.nii.gz": phantom.mask_reader1,
        f"{MASKS_DIR}/{patient}_roi_r2.nii.gz": phantom.mask_reader2,
    }
    for relative, volume in files.items():
        (Path(root) / relative).write_bytes(_gzip(_nifti_bytes(volume, phantom.spacing_mm)))
    return patient


def _default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def render_images(
    config: SampleConfig, traits: pd.DataFrame, root: Path, progress: Progress | None = None
) -> None:
    """Render every patient's scan into ``root/images`` and ``root/masks``."""
    (root / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
    (root / MASKS_DIR).mkdir(parents=True, exist_ok=True)
    records = traits.assign(index=range(len(traits))).to_dict("records")
    tasks = [(config.seed, record, str(root), config.centre) for record in records]
    map_in_workers(_render_patient, tasks, workers=config.workers or _default_workers(), progress=progress)


def build_sample_workspace(
    root: Path | str, config: SampleConfig | None = None, progress: Progress | None = None, *, replace: bool = False
) -> Workspace:
    """Write the sample cohort into ``root`` and return its :class:`Workspace`.

    Writes ``clinical.csv``, ``pathology.csv``, ``manifest.csv`` (when images are made),
    ``images/``, ``masks/`` and ``sample.json`` (the config). Images are rendered in a scratch
    folder beside ``root`` and moved in only when all are done, so an interrupted build leaves no
    half-filled folder. An existing sample in ``root`` is replaced; a user's own cohort there is
    refused unless ``replace``. What was derived from earlier tables (split, labels, ...) is removed.
    """
    config = config or SampleConfig()
    target = Workspace(Path(root))
    if target.holds_cohort() and not target.is_sample and not replace:
        raise CrcInputError(
            f"{target.root} holds a cohort that is not the sample; building the sample there would replace "
            "its tables. Choose an empty folder, or confirm with --replace."
        )
    root = ensure_writable_dir(Path(root))
    tables = generate_tables(config)
    workspace = Workspace(root)
    if config.with_images:
        scratch = Path(tempfile.mkdtemp(prefix=".sample-", dir=root))
        try:
            render_images(config, tables.traits, scratch, progress)
            for folder in (IMAGES_DIR, MASKS_DIR):
                shutil.rmtree(root / folder, ignore_errors=True)
                os.replace(scratch / folder, root / folder)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        # Crop sets and their cached features are keyed by the cutting parameters, not by the
        # volumes: kept, they would stand for the patients of the cohort replaced here.
        for derived in (workspace.crops_dir, workspace.features_dir):
            shutil.rmtree(derived, ignore_errors=True)
        atomic_write_csv(workspace.manifest_csv, tables.manifest)
    else:
        workspace.manifest_csv.unlink(missing_ok=True)
        if progress:
            progress(1, 1)
    # Derived files from an earlier cohort would silently mismatch the new one.
    workspace.remove_derived()
    atomic_write_csv(workspace.pathology_csv, tables.pathology)
    atomic_write_csv(workspace.clinical_csv, tables.clinical)
    atomic_write_text(workspace.sample_json, json.dumps({"generator": "crc_core.sample.cohort", **config.to_dict(),
                                                          **({"differs": asdict(CENTRE)} if config.centre else {})}, indent=2))
    if config.centre:
        from crc_core.labels.rules import LabelConfig, label_workspace

        # An external centre is labelled by the development cohort's rules: its marker cut-offs are
        # the study sample's population medians, never this centre's own.
        label_workspace(workspace, LabelConfig(is_cutoff_source="given", marker_cutoffs=DEVELOPMENT_MARKER_MEDIANS))
    return workspace


def _folder_word(centre: str) -> str:
    return "-".join("".join(c if c.isalnum() else " " for c in centre.lower()).split()) or "centre"


def default_centre_folder(home: Workspace | Path, centre: str = "Lanzhou") -> Path:
    """Where a second centre for the workspace ``home`` goes unless the user says otherwise: beside
    ``home`` (``…/workspace-lanzhou``), or, where that would be inside the CRC-TIME program folder
    (the default ``./workspace`` of a checkout), beside the program folder
    (``…/CRC-TIME-workspace-lanzhou``), so that git and an update of the code never see it."""
    root = Workspace.of(home).root.expanduser().resolve()
    beside = root.parent / f"{root.name}-{_folder_word(centre)}"
    program = program_folder()
    if program is not None and lies_within(beside, program):
        beside = program.parent / f"{program.name}-{root.name}-{_folder_word(centre)}"
    return beside


def check_outside_program_folder(folder: Path | str, suggestion: Path) -> None:
    """Refuse to build a centre inside the CRC-TIME program folder, naming one outside it."""
    program = program_folder()
    if program is not None and lies_within(folder, program):
        raise CrcInputError(f"{folder} lies inside the CRC-TIME program folder {program}: a centre's CT volumes and tables "
                            f"would sit among the code, in git's view. Choose a folder outside it, e.g. {suggestion}.")


def check_centre_folder(home: Workspace | Path, folder: Path | str, centre: str = "") -> Path:
    """Where a page may build a second centre for the workspace ``home``: never ``home`` itself (its
    runs and crops would go), nor inside the CRC-TIME program folder, nor a folder holding another
    cohort; an earlier centre sample there is rebuilt. Returns the folder, or raises
    :class:`CrcInputError` saying what to choose instead."""
    home = Workspace.of(home)
    text = str(folder).strip()
    if not text:
        raise CrcInputError("Give a folder for the second centre's workspace.")
    target = Workspace(Path(text).expanduser())
    where, open_now = target.root.resolve(), home.root.resolve()
    if where == open_now:
        raise CrcInputError(f"{target.root} is the workspace open now: building a centre there would replace its "
                            "cohort, crops and runs. Choose another folder.")
    if open_now in where.parents or where in open_now.parents:
        raise CrcInputError(f"{target.root} lies inside the workspace open now, or holds it: choose a folder beside it.")
    check_outside_program_folder(target.root, default_centre_folder(home, centre or "centre"))
    if target.root.exists() and not target.root.is_dir():
        raise CrcInputError(f"{target.root} is a file: choose a folder.")
    # A rebuild replaces images/ and masks/: only an earlier centre sample, or nothing, may be there.
    if target.root.is_dir() and any(target.root.iterdir()) and not sample_centre(target):
        raise CrcInputError(f"{target.root} holds files that are not a sample centre: choose an empty or new folder.")
    return target.root


def sample_centre(workspace: Workspace | Path) -> str:
    """The centre a sample workspace was built for ("" for the development sample, or for a
    workspace that is not a sample at all)."""
    workspace = Workspace.of(workspace)
    if not workspace.is_sample:
        return ""
    try:
        return str(json.loads(workspace.sample_json.read_text(encoding="utf-8")).get("centre") or "")
    except (OSError, ValueError, AttributeError):
        return ""
