"""CT & ROI: volumes and masks to the largest-cross-section crops the models see."""

from pathlib import Path

import streamlit as st

from crc_core.imaging import archive

from crc_core.imaging import preprocess

from crc_core.imaging import viewer
from crc_core.errors import CrcInputError
from crc_core.imaging.volumes import INTENSITY_MODES, MARGINS_PX, PreprocessConfig
from crc_core.tables import listing
from pages import _jobs, _reader_agreement, _ui

GALLERY_COLUMNS, GALLERY_PAGE = 6, 24

st.title("CT & ROI")
st.caption("As the paper: the axial slice with the largest ROI, windowed, cropped around the tumour and saved as PNG "
           "for the models. Options its peers used (margins of 10 or 20 px, 2.5D input) are here too.")

workspace = _ui.require_workspace()
_ui.show_flashes()

with st.expander("Bring your own imaging (zip or folder)"):
    st.write("A zip or a folder with one CT and one ROI mask per patient (NIfTI, NRRD, MHA or DICOM), named as "
             "`P001/ct.nii.gz` + `P001/mask.nii.gz`, or `images/P001.nii.gz` + `masks/P001.nii.gz`, or "
             "`P001_ct.nii.gz` + `P001_mask.nii.gz` (a second reader: `..._mask_r2`), or with a `manifest.csv`. "
             f"A zip may be up to {archive.MAX_EXTRACTED_MB:,} MB unpacked; it stays on this machine.")
    upload = st.file_uploader("Zip of volumes and masks", type=["zip"], max_upload_size=archive.MAX_EXTRACTED_MB)
    folder_text = st.text_input("…or a folder on this machine")
    mode = None
    if workspace.manifest_csv.exists():
        listed = archive.listed_patients(workspace)
        st.warning(f"This workspace lists {listed if listed is not None else 'some'} patients in `manifest.csv` already. "
                   "Say what the new images do with them:")
        mode = st.radio("The patients listed now", archive.IMPORT_MODES, index=None, key="import_mode", format_func={
            archive.MERGE: "Merge: keep them and add the new patients (one listed in both takes the new files)",
            archive.REPLACE: "Replace: list only the new patients (the crops of the others leave the crop set in use)",
        }.get)
    chosen = upload is not None or bool(folder_text.strip())
    if st.button("Use these images", disabled=not chosen or (workspace.manifest_csv.exists() and mode is None)):
        try:
            imported = archive.import_imaging(workspace, zip_file=upload, zip_name=getattr(upload, "name", None),
                                              folder=None if upload is not None else folder_text, mode=mode)
        except CrcInputError as exc:
            _ui.show_input_error(exc)
        else:
            _ui.flash("success", imported.describe())
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
    intensity = left.selectbox("Intensity", INTENSITY_MODES, format_func={
        "abdomen": "abdomen window W400/L40", "soft_tissue": "soft-tissue window W350/L50",
        "custom": "custom window", "zscore": "z-score within the ROI"}.get)
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
    label = left.number_input("Tumour label value in the masks (0: the masks' single label)", 0, 255, 0)
    resample_mask = middle.checkbox("Resample masks of another grid onto the image",
                                    help="Nearest neighbour; otherwise such a mask is reported as a failure.")
    submitted = st.form_submit_button("Run preprocessing", type="primary")
if submitted:
    try:
        config = PreprocessConfig(intensity=intensity, window_width=width, window_level=level,
                                  in_plane_mm=pixel_mm if resample else None, margin_px=int(margin), context=context,
                                  mask_outside=mask_outside, size=int(size), label=int(label) or None,
                                  resample_mask=resample_mask)
    except CrcInputError as exc:
        _ui.show_input_error(exc)
    else:
        _jobs.start_step(workspace, "preprocess", config)


def show_failures(index, what: str) -> None:
    groups = preprocess.failure_groups(index)
    st.dataframe(groups, hide_index=True, column_config={"reason": st.column_config.TextColumn(width="large")})
    with st.expander(f"Every {what} patient and its message"):
        st.dataframe(index[index["status"] != "ok"][["patient_id", "message"]], hide_index=True)


def before_this_manifest(job) -> bool:
    """A job's outcome belongs to the images it worked on: once manifest.csv is written again (an
    import since), its failure is history, not an alert about the images listed now."""
    return _ui.stamp(workspace.manifest_csv) > job.started_at * 1e9


def show_crops() -> int | None:
    """The last run's outcome, then the crop set in use: failures and gallery. Returns its mask label."""
    job, running = _jobs.show_job(workspace, "preprocess", "Preprocessing", settled=before_this_manifest)
    if running:
        return None
    try:
        if job is not None and job.state == "failed" and job.result.get("key") and not before_this_manifest(job):
            failed_run = preprocess.failed_run(workspace, job.result["key"])
            if failed_run is not None:
                st.markdown("**Why no patient could be cropped**, by reason:")
                show_failures(failed_run, "failed")
        crops = preprocess.latest_crops(workspace)
    except CrcInputError as exc:
        _ui.show_input_error(exc)
        return None
    if crops is None:
        st.info("No crops in use yet: choose the parameters and run preprocessing.")
        return None
    ok, failed = crops.ok, crops.failed
    st.success(f"In use: {len(ok)} of {len(manifest)} patients cropped ({crops.config.describe()}) in `{crops.folder}`.")
    uncut = sorted(set(manifest["patient_id"]) - set(crops.index["patient_id"]))
    if uncut:
        st.info(f"{len(uncut)} listed patients have no crop in this set yet (imported, or their files changed, since it was "
                f"cut): {listing(uncut, 5)}. Run preprocessing to add them.")
    if len(failed):
        st.warning(f"{len(failed)} patients could not be cropped and are left out; the reasons:")
        show_failures(crops.index, "left-out")
    pages = max(1, -(-len(ok) // GALLERY_PAGE))
    page = st.number_input(f"Gallery page (of {pages})", 1, pages, 1) if pages > 1 else 1
    columns = st.columns(GALLERY_COLUMNS)
    for i, row in enumerate(ok.iloc[(page - 1) * GALLERY_PAGE : page * GALLERY_PAGE].to_dict("records")):
        crop = preprocess.load_crop(crops.folder, row)
        if crop is not None:
            columns[i % GALLERY_COLUMNS].image(viewer.crop_picture(crop), caption=f"{row['patient_id']} · slice {crop.slice_index}")
    return crops.config.label


@st.cache_resource(show_spinner="Reading the volumes…", max_entries=2)
def load_case(row: tuple, label: int | None, stamps: tuple) -> viewer.CaseVolumes:
    # stamps (the files' modification times) make an edited volume a new entry.
    return viewer.load_case(dict(row), label)


def show_viewer(label: int | None) -> None:
    patient = st.selectbox("Patient", list(manifest["patient_id"]))
    row = manifest[manifest["patient_id"] == patient].iloc[0].to_dict()
    files = [row.get(c, "") for c in ("image", "mask", "mask_r2")]
    try:
        case = load_case(tuple(sorted(row.items())), label, tuple(_ui.stamp(Path(f)) for f in files if f))
    except CrcInputError as exc:
        _ui.show_input_error(exc)
        return
    left, middle, right = st.columns([3, 1, 1])
    z = left.slider("Slice", 0, case.hu.shape[0] - 1, case.largest_slice, help="Starts on the slice with reader 1's largest ROI.")
    view_width = middle.number_input("Window width", 1.0, 4000.0, 400.0, 10.0, key="view_width")
    view_level = right.number_input("Window level", -1000.0, 3000.0, 40.0, 10.0, key="view_level")
    st.image(viewer.slice_picture(case, z, view_width, view_level), width=520,
             caption=f"{patient}, slice {z} (radiological convention: the patient's right on the left, anterior at "
                     "the top): reader 1 red" + (", reader 2 cyan" if case.reader2 is not None else ""))


crops_tab, viewer_tab, agreement_tab = st.tabs(["Crops gallery", "Patient viewer", "Reader agreement"])
with crops_tab:
    crop_label = show_crops()
with viewer_tab:
    show_viewer(crop_label)
with agreement_tab:
    _reader_agreement.draw(workspace, has_reader2, settled=before_this_manifest)
