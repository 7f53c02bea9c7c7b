"""Report: the figures and tables a run takes to a lab meeting or a manuscript, TRIPOD+AI and
the methods text.
"""

from crc_core._lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    "methods": [
        "methods_text",
    ],
    "report": [
        "pseudonyms", "pseudonym_seed", "pseudonymised_text", "trace_in_pseudonym_order",
        "figure_in_pseudonym_order", "pseudonymised_frame", "pseudonymised_figure",
        "without_paths", "ReportConfig", "CI_METHODS", "export_images", "FIGURE_NAMES",
        "figure_name", "run_figures", "images_zip", "STYLE", "SECTIONS", "patient_names",
        "build_report", "write_report", "write_figures", "check_output_file",
        "check_output_folder",
    ],
    "software": [
        "PACKAGES", "software_versions",
    ],
    "tripod": [
        "TO_WRITE", "DOCUMENTED", "ITEMS", "prediction_sources", "FILLERS", "checklist",
        "TITLE", "NOTE", "to_markdown", "to_docx",
    ],
})
