"""Networks: the backbone zoo and its weights, the penalised linear heads, devices and precision, and ONNX Runtime for forward passes where it is faster.
"""

from crc_core._lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    "backbones": [
        "REPO_MODELS_DIR", "IMAGENET_MEAN", "IMAGENET_STD", "NUM_CLASSES", "Backbone",
        "BACKBONES", "backbone", "WeightsInfo", "weights_on_disk", "torch_home",
        "candidate_weight_files", "guess_architecture", "read_state_dict", "imagenet_model",
        "check_weights_file", "classifier", "feature_extractor",
    ],
    "devices": [
        "DEVICES", "PRECISIONS", "DevicePlan", "cpu_flags", "cpu_name", "plan_device",
        "autocast", "time_steps",
    ],
    "onnx_forward": ["OnnxModule", "fastest_forward"],
    "linear_models": [
        "C_GRID", "LinearModel", "inner_folds", "fit_with_out_of_fold",
        "fit_penalised_logistic", "cross_fitted_predictions", "features_network",
    ],
})
