"""CT & ROI: volumes and masks to the largest-cross-section crops, with reader agreement (planned)."""

from pages import _ui

_ui.require_workspace()
_ui.placeholder(
    "CT & ROI",
    "Turn each patient's CT volume and ROI mask into the crop the models see, as the paper did: "
    "the axial slice with the largest ROI, windowed and cropped.",
    [
        "Reading NIfTI, NRRD, MHA and DICOM (single files or series folders), with geometry checks.",
        "Window presets (abdomen W400/L40, soft tissue W350/L50), crop margins of 0, 10 or 20 px.",
        "A gallery of crops with the ROI outline and a slice-by-slice patient viewer.",
        "Two readers' agreement: Dice, 95% Hausdorff distance, PyRadiomics features and ICC(2,1).",
    ],
    "The sample workspace already holds one CT volume and two readers' masks per patient "
    "(see `manifest.csv`).",
)
