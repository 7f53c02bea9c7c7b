"""Train: the grid of runs and its modes (deep features, fine-tuning), the labelled crops,
the deep and radiomics features and ComBat harmonisation.
"""

from crc_core._lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    "grid": [
        "MODES", "EVALUATIONS", "HARMONISATIONS", "STARTING", "Progress", "Say",
        "SELECTION_NOTE", "TrainConfig", "train_run", "train_grid", "queued_cells",
        "never_started_text", "Unfinished", "unfinished", "resume_job", "Partition",
        "partitions", "RunContext", "MODE_RUNNERS", "code_version", "readiness",
    ],
    "datasets": [
        "TARGETS", "FEW_PER_CLASS", "target_column", "file_hash", "LabelledCrops",
        "labelled_crops", "check_classes",
    ],
    "features": [
        "FEATURE_BATCH", "FIRST_BATCH", "SECONDS_PER_BATCH", "model_input", "deep_features",
        "weights_tag", "cached_deep_features", "radiomics_table",
    ],
    "finetune": [
        "MetricsSink", "SCHEDULES", "SELECTIONS", "SETTING_SOURCES", "source_of",
        "FinetuneConfig", "TrainingFailed", "read_checkpoint", "FitResult", "BatchProgress",
        "world", "batches_per_epoch", "augment", "class_weights", "scheduler_for",
        "train_one_epoch", "evaluate", "auc", "fit", "precision_probe",
    ],
    "harmonisation": [
        "BATCH_COLUMN", "patient_centres", "check_centres", "ComBatModel", "fit_combat",
        "combat_transductive", "centre_mean_gap",
    ],
})
