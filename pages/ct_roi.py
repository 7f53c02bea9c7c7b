"""CT & ROI: volumes and masks to the largest-cross-section crops the models see."""

import io
from pathlib import Path

import streamlit as st

from crc_core import agreement, archive, preprocess, reader_study, viewer
from crc_core.cli import preprocess_arguments
from crc_core.errors import CrcInputError
from crc_core.imaging import INTENSITY_MODES, MARGINS_PX, PreprocessConfig
from crc_core.jobs import start_job
from pages import _ui

GALLERY_COLUMNS = 6
GALLERY_PAGE = 24

st.title("CT & ROI")
st.caption(
    "As the paper: the axial slice with the largest ROI, windowed, cropped around the tumour and saved "
    "as PNG for the models. Options its peers used (margins of 10 or 20 px, 2.5D input) are here too."
)

workspace = _ui.require_workspace()
_ui.show_flashes()

with st.expander("Bring your own imaging (zip or folder)"):
    st.write(
        "A zip or a folder with one CT and one ROI mask per patient (NIfTI, NRRD, MHA or DICOM), named as "
        "`P001/ct.nii.gz` + `P001/mask.nii.gz`, or `images/P001.nii.gz` + `masks/P001.nii.gz`, or "
        "`P001_ct.nii.gz` + `P001_mask.nii.gz` (a second reader: `..._mask_r2`), or with a `manifest.csv`. "
        f"A zip may unpack to at most {archive.MAX_EXTRACTED_MB:,} MB; it stays on this machine."
    )
    upload = st.file_uploader("Zip of volumes and masks", type=["zip"])
    folder_text = st.text_input("…or a folder on this machine")
    if st.button("Use these images", disabled=upload is None and not folder_text.strip()):
        try:
            if upload is not None:
                target = workspace.root / "imaging" / Path(upload.name).stem
                extracted = archive.extract_zip(io.BytesIO(upload.getvalue()), target)
                if extracted.skipped:
                    _ui.flash("info", f"Skipped {len(extracted.skipped)} files that are not images: "
                                      + ", ".join(extracted.skipped[:10]))
                source = extracted.folder
            else:
                source = Path(folder_text.strip()).expanduser()
                if not source.is_dir():
                    raise CrcInputError(f"{source} is not a folder on this machine.")
            manifest = archive.write_manifest(workspace.root, source)
        except CrcInputError as exc:
            _ui.show_input_error(exc)
        else:
            _ui.flash("success", f"manifest.csv lists {len(manifest)} patients from {source}.")
            st.rerun()

try:
    manifest = preprocess.read_manifest(workspace)
except CrcInputError as exc:
    _ui.show_input_error(exc)
    st.stop()
has_reader2 = "mask_r2" in manifest.columns and manifest["mask_r2"].astype(bool).any()
st.write(f"**{len(manifest)} patients** in `manifest.csv`" + (", with a second reader's masks." if has_reader2 else "."))

st.subheader("Crops")
with st.form("preprocess"):
    left, middle, right = st.columns(3)
    intensity = left.selectbox(
        "Intensity", INTENSITY_MODES,
        format_func={"abdomen": "abdomen window W400/L40", "soft_tissue": "soft-tissue window W350/L50",
                     "custom": "custom window", "zscore": "z-score within the ROI"}.get,
    )
    width = middle.number_input("Custom window width (HU)", 1.0, 4000.0, 400.0, 10.0)
    level = right.number_input("Custom window level (HU)", -1000.0, 3000.0, 40.0, 10.0)
    margin = left.radio("Margin around the ROI (px)", MARGINS_PX, horizontal=True,
                        help="The paper cropped to the ROI; Pan et al. expanded it by 10 and 20 pixels.")
    context = middle.radio("Input", ["2d", "2.5d"], horizontal=True,
                           format_func={"2d": "2D slice", "2.5d": "2.5D (slice and neighbours)"}.get)
    size = right.selectbox("Model input size (px)", [224, 256, 299, 128], index=0)
    resample = left.checkbox("Resample in-plane first")
    pixel_mm = middle.number_input("Pixel size (mm)", 0.3, 3.0, 0.7, 0.05)
    mask_outside = right.checkbox("Set pixels outside the ROI to 0")
    label_text = left.text_input("Tumour label value in the masks (blank: the single label)")
    resample_mask = middle.checkbox("Resample masks of another grid onto the image",
                                    help="Nearest neighbour; otherwise such a mask is reported as a failure.")
    submitted = st.form_submit_button("Run preprocessing", type="primary")

if submitted:
    try:
        label = int(label_text) if label_text.strip() else None
    except ValueError:
        st.error(f"The label value must be a whole number (got {label_text!r}).")
        st.stop()
    try:
        config = PreprocessConfig(intensity=intensity, window_width=width, window_level=level,
                                  in_plane_mm=pixel_mm if resample else None, margin_px=int(margin), context=context,
                                  mask_outside=mask_outside, size=int(size), label=label, resample_mask=resample_mask)
    except CrcInputError as exc:
        _ui.show_input_error(exc)
        st.stop()
    start_job(workspace.root, workspace.root, "preprocess", preprocess_arguments(config))


def show_crops() -> int | None:
    """The crops made last: summary, failures and gallery. Returns their mask label setting."""
    job, running = _ui.show_job(workspace, "preprocess", "Preprocessing")
    if running:
        return None
    try:
        latest = preprocess.latest_crops(workspace)
    except CrcInputError as exc:
        _ui.show_input_error(exc)
        return None
    if latest is None:
        st.info("No crops yet: choose the parameters and run preprocessing.")
        return None
    folder, config, index = latest
    ok = index[index["status"] == "ok"]
    failed = index[index["status"] != "ok"]
    st.success(f"{len(ok)} of {len(index)} patients cropped ({config.describe()}) in `{folder}`.")
    if job is not None and job.state == "done":
        st.caption(f"Last run: {job.message}")
    if len(failed):
        st.warning(f"{len(failed)} patients could not be cropped; the others are ready.")
        st.dataframe(failed[["patient_id", "message"]], hide_index=True)
    pages = max(1, -(-len(ok) // GALLERY_PAGE))
    page = st.number_input(f"Gallery page (of {pages})", 1, pages, 1) if pages > 1 else 1
    shown = ok.iloc[(page - 1) * GALLERY_PAGE : page * GALLERY_PAGE]
    columns = st.columns(GALLERY_COLUMNS)
    for i, row in enumerate(shown.to_dict("records")):
        crop = preprocess.load_crop(folder, row)
        if crop is not None:
            columns[i % GALLERY_COLUMNS].image(viewer.crop_picture(crop), caption=f"{row['patient_id']} · slice {crop.slice_index}")
    return config.label


def show_viewer(label: int | None) -> None:
    patient = st.selectbox("Patient", list(manifest["patient_id"]))
    row = manifest[manifest["patient_id"] == patient].iloc[0].to_dict()
    try:
        case = viewer.load_case(row, label)
    except CrcInputError as exc:
        _ui.show_input_error(exc)
        return
    left, middle, right = st.columns([3, 1, 1])
    z = left.slider("Slice", 0, case.hu.shape[0] - 1, case.largest_slice,
                    help="Starts on the slice with reader 1's largest ROI.")
    view_width = middle.number_input("Window width", 1.0, 4000.0, 400.0, 10.0, key="view_width")
    view_level = right.number_input("Window level", -1000.0, 3000.0, 40.0, 10.0, key="view_level")
    st.image(viewer.slice_picture(case, z, view_width, view_level),
             caption=f"{patient}, slice {z}: reader 1 red" + (", reader 2 cyan" if case.reader2 is not None else ""),
             width=520)


def show_agreement() -> None:
    if not has_reader2:
        st.info("manifest.csv lists no second reader's masks (column mask_r2): there is nothing to compare.")
        return
    st.caption(
        "Per patient: Dice and the 95th-percentile Hausdorff distance between the readers' ROIs. Per "
        "PyRadiomics feature (first order, shape, GLCM, GLRLM, GLSZM): ICC(2,1) with its 95% CI and a paired "
        f"Wilcoxon test; ICC ≥ {agreement.RELIABLE_ICC} counts as reliable."
    )
    with_features = st.checkbox("PyRadiomics features", value=reader_study.radiomics_available(),
                                disabled=not reader_study.radiomics_available(),
                                help="Needs PyRadiomics, which `make run` installs where a C compiler exists.")
    if st.button("Compute reader agreement"):
        start_job(workspace.root, workspace.root, "agreement", [] if with_features else ["--no-features"])
        st.rerun()
    _, running = _ui.show_job(workspace, "agreement", "Reader agreement")
    if running:
        return
    saved = reader_study.read_reader_study(workspace)
    if saved is None:
        return
    masks, features, summary = saved
    st.success(summary)
    failed = masks[masks["status"] != "ok"]
    if len(failed):
        st.warning(f"{len(failed)} patients could not be compared.")
        st.dataframe(failed[["patient_id", "message"]], hide_index=True)
    left, right = st.columns(2)
    left.dataframe(masks[masks["status"] == "ok"].drop(columns=["status", "message"]).round(3), hide_index=True)
    left.download_button("Per-patient agreement (CSV)", masks.to_csv(index=False), "reader_agreement_masks.csv")
    if features is not None:
        right.dataframe(features.sort_values("icc").round(3), hide_index=True)
        right.download_button("Per-feature ICC (CSV)", features.to_csv(index=False), "reader_agreement_features.csv")


crops_tab, viewer_tab, agreement_tab = st.tabs(["Crops gallery", "Patient viewer", "Reader agreement"])
with crops_tab:
    crop_label = show_crops()
with viewer_tab:
    show_viewer(crop_label)
with agreement_tab:
    show_agreement()
