"""Train: the paper's seven backbones on the crops, for the four targets, in a worker."""

import streamlit as st

from crc_core import training
from crc_core.backbones import BACKBONES, weights_on_disk
from crc_core.datasets import TARGETS
from crc_core.errors import CrcInputError
from pages import _jobs, _training_views, _ui

st.title("Train")
st.caption("ResNet-34/50/101/152 and DenseNet-121/169/201 on the largest-ROI crops, for TSR, TIL, Immune Score "
           "and TIME — fast on a laptop with frozen features, or fine-tuned with the paper's protocol.")

workspace = _ui.require_workspace()
_ui.show_flashes()
missing = training.readiness(workspace)
for problem in missing:
    st.warning(problem)

found = [spec.title for name, spec in BACKBONES.items() if weights_on_disk(name)]
st.caption(("ImageNet weights on this machine for: " + ", ".join(found) + ". ") if found else
           "No ImageNet weights on this machine (see models/README.md): the backbones start from random "
           "initialisation, and every result says so. ")

with st.form("train"):
    left, middle, right = st.columns(3)
    targets = left.multiselect("Targets", list(TARGETS), default=["tsr"],
                               format_func=lambda t: f"{t.upper()}: {TARGETS[t][1]}")
    backbones = middle.multiselect("Backbones", list(BACKBONES), default=["densenet121"],
                                   format_func=lambda b: BACKBONES[b].title, help="Each target × backbone is its own run.")
    mode = right.radio("Mode", training.MODES, format_func={
        "features": "frozen features + logistic regression (fast, CPU)", "finetune": "fine-tune (the paper; GPU)",
        "radiomics": "PyRadiomics features + logistic regression (baseline)"}.get)
    left, middle, right = st.columns(3)
    evaluation = left.radio("Evaluation", training.EVALUATIONS, format_func={
        "holdout": "the saved split (the paper)", "kfold": "k-fold cross-validation",
        "repeated": "repeated random splits"}.get, help="The paper's own limitation was one split.")
    n_folds = middle.selectbox("Folds (when the split has none)", [5, 10])
    n_repeats = middle.number_input("Repeats", 2, 200, 20)
    seed = right.number_input("Seed", 0, 2**31 - 1, 0, key="train_seed")
    weights = right.radio("Start from", ["imagenet", "random"],
                          format_func={"imagenet": "ImageNet weights", "random": "random initialisation"}.get)
    require = left.checkbox("Refuse random initialisation", help="Stop instead of training without ImageNet weights.")
    allow_missing = middle.checkbox("Train without labelled patients that have no crop")
    with st.expander("Fine-tuning: the paper's protocol (100 epochs, batch 32, SGD lr 0.01, momentum 0.9)"):
        a, b, c, d = st.columns(4)
        epochs = a.number_input("Epochs", 1, 1000, 100)
        batch_size = b.number_input("Batch", 2, 1024, 32)
        lr = c.number_input("Learning rate", 0.00001, 1.0, 0.01, format="%.5f")
        schedule = d.selectbox("Schedule", training.SCHEDULES)
        selection = st.radio("Keep the epoch with the lowest loss on", training.SELECTIONS, format_func={
            "validation_loss": "the validation cohort (the paper)", "inner_split": "an inner split of the training cohort"}.get)
        st.caption(training.SELECTION_NOTE)
        early = a.number_input("Early stopping after (epochs; 0 = off)", 0, 1000, 0)
        device = b.selectbox("Device", ["auto", "cpu", "cuda", "mps"])
        precision = c.selectbox("Precision", ["auto", "fp32", "bf16", "fp16"], help="auto: measured on CPUs")
    submitted = st.form_submit_button("Start training", type="primary", disabled=bool(missing))
if submitted:
    try:
        config = training.TrainConfig(
            targets=tuple(targets), backbones=tuple(backbones) or ("densenet121",), mode=mode, evaluation=evaluation,
            n_folds=n_folds, n_repeats=int(n_repeats), seed=int(seed), weights=weights, require_pretrained=require,
            allow_missing_crops=allow_missing, epochs=int(epochs), batch_size=int(batch_size), lr=float(lr),
            schedule=schedule, selection=selection, early_stopping=int(early), device=device, precision=precision)
    except CrcInputError as exc:
        _ui.show_input_error(exc)
    else:
        _jobs.start_step(workspace, "train", config)

job, running = _jobs.show_job(workspace, "train", "Training")
if running:
    _training_views.live(str(workspace.root), job.job_id)
_training_views.runs(workspace)
