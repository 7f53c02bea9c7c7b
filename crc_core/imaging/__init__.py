"""CT & ROI: volumes and masks as hospitals store them, geometry checks, the largest-cross-section
crops, the import of an imaging archive, tumour ROIs from DICOM-SEG and RTSTRUCT, the viewer and the two readers' agreement.
"""

from crc_core._lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    "volumes": [
        "WINDOW_PRESETS", "INTENSITY_MODES", "MARGINS_PX", "VOLUME_SUFFIXES", "ZSCORE_RANGE",
        "ORIENTATION", "PREPROCESS_VERSION", "GeometryError", "is_volume_path",
        "read_dicom_series", "read_volume", "read_mask", "read_case", "dicom_roi_kind", "IMAGE_ONLY_SUFFIXES", "reorient", "read_header", "binary_mask",
        "PERTURBATIONS", "perturbed_mask", "check_geometry", "resample_mask_to_image",
        "largest_roi_slice", "PreprocessConfig", "CaseCrop", "window_to_unit", "zscore_to_unit",
        "square_box", "preprocess_case", "outline", "overlay_rgb",
    ],
    "agreement": [
        "RADIOMICS_CLASSES", "RELIABLE_ICC", "FeatureAgreement", "dice", "hausdorff95",
        "mask_agreement", "icc", "paired_wilcoxon", "radiomics_features", "feature_agreement",
        "share_reliable",
    ],
    "archive": [
        "MAX_EXTRACTED_MB", "MAX_EXTRACTED_BYTES", "MASK_WORDS", "READER2_WORDS",
        "MANIFEST_NAME", "PATH_COLUMNS", "IMAGE_FOLDERS", "MASK_FOLDERS", "READER2_FOLDERS",
        "DICOM_SUFFIXES", "FILE_VOLUME_SUFFIXES", "JUNK_FOLDERS", "JUNK_FILES",
        "MAX_NAME_BYTES", "IMPORT_MODES", "Extracted", "extract_zip", "discover_cases",
        "write_manifest", "ManifestExists", "listed_patients", "ImagingImport", "import_imaging",
    ],
    "preprocess": [
        "INDEX_CSV", "FAILED_RUN_CSV", "PARAMS_JSON", "MANIFEST_COLUMNS", "INDEX_COLUMNS",
        "config_key", "crop_file_stem", "crop_file", "MASK_VARIANTS", "crops_folder",
        "NothingCropped", "read_manifest", "file_stamp", "failure_reason", "PreprocessResult",
        "failure_groups", "describe_failures", "preprocess_cohort", "failed_run", "CropSet",
        "read_crop_set", "latest_crops", "listed_ids", "keep_crops_of_manifest", "load_crop",
    ],
    "reader_study": [
        "FEATURE_PHASE", "MASK_COLUMNS", "AgreementConfig", "ReaderStudyResult",
        "radiomics_available", "reader_agreement", "read_reader_study",
    ],
    "dicom_roi": ["read_roi_mask"],
    "dicom_refs": ["CtReference", "RoiMaskInfo", "roi_kind"],
    "dicom_seg": ["read_seg_mask", "segment_labels"],
    "rtstruct": ["read_rtstruct_mask", "roi_names", "polygon_mask"],
    "viewer": [
        "READER1_COLOUR", "READER2_COLOUR", "CaseVolumes", "load_case", "slice_picture",
        "crop_picture",
    ],
})
