"""The built-in sample cohort and the phantom that paints its CT volumes.
"""

from crc_core._lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    "cohort": [
        "Progress", "IMAGES_DIR", "MASKS_DIR", "LAB_QUARTILES", "TC_MEAN_SD", "MISSING_SHARE",
        "SEX_MALE_SHARE", "PT_STAGES", "PN_STAGES", "AGE_GROUPS", "MARKERS", "MARKER_BASE",
        "DEVELOPMENT_MARKER_MEDIANS", "Centre", "CENTRE", "CENTRE_PATIENTS", "SampleConfig",
        "SampleTables", "centre_code", "patient_ids", "generate_tables", "render_images",
        "build_sample_workspace", "default_centre_folder", "check_outside_program_folder",
        "check_centre_folder", "sample_centre",
    ],
    "phantom": [
        "AIR_HU", "FAT_HU", "MUSCLE_HU", "BOWEL_WALL_HU", "BONE_HU", "TUMOUR_HU", "PhantomSpec",
        "Phantom", "render", "to_nifti_array",
    ],
})
