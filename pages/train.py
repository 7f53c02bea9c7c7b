"""Train: the backbone zoo, the paper's protocol, live loss curves and the run store (planned)."""

from pages import _ui

_ui.require_workspace()
_ui.placeholder(
    "Train",
    "Train models that predict each label from the CT crops, as the paper did with ImageNet-"
    "pretrained ResNet and DenseNet backbones.",
    [
        "Backbones: ResNet-34/50/101/152 and DenseNet-121/169/201 (torchvision, ImageNet weights "
        "from torchvision's cache or a local weights file in `models/`).",
        "The paper's protocol as defaults: 100 epochs, batch size 32, ImageNet normalisation, "
        "initial learning rate 0.01; every setting adjustable.",
        "A fast frozen-feature mode (deep features + logistic regression) for laptops without a GPU.",
        "Training in a worker process with live loss curves; runs kept in the workspace's run store "
        "and resumable from their last checkpoint.",
        "Repeated splits and k-fold cross-validation, which the paper names as its limitation.",
    ],
    "It needs the crops from **CT & ROI** and the labels from **Labels** first.",
)
