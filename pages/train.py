"""Train: the paper's seven backbones on the crops, for the four targets, in a worker."""

import streamlit as st

from crc_core.training import grid as training
from crc_core.networks.backbones import BACKBONES, weights_on_disk
from crc_core.training.datasets import TARGETS
from crc_core.errors import CrcInputError
from crc_core.training.finetune import SCHEDULES, SELECTIONS, FinetuneConfig, source_of
from crc_core.runs.store import RunStore
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
           "initialisation, and every result says so.")


def sourced(label: str, setting: str) -> str:
    """A fine-tuning setting's label with whose default it is."""
    return f"{label} — {source_of(setting)}"


with st.form("train"):
    left, middle, right = st.columns(3)
    # wrap: directly in a column, Streamlit keeps the chips on one scrolling row, and all but the
    # last chosen were out of sight (found in use).
    # Short chips, what each means in the help: a chip of a narrow column shows a dozen letters.
    targets = left.multiselect("Targets", list(TARGETS), default=["tsr"], format_func=str.upper, wrap=True,
                               help="Each target × backbone is its own run. "
                                    + "; ".join(f"**{t.upper()}**: {TARGETS[t][1]}" for t in TARGETS) + ".")
    backbones = middle.multiselect("Backbones", list(BACKBONES), default=["densenet121"], wrap=True,
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
    # Without weights on the machine, ImageNet would silently mean random: the default says so.
    weights = right.radio("Start from", ["imagenet", "random"], index=0 if found else 1,
                          format_func={"imagenet": "ImageNet weights (the paper)", "random": "random initialisation"}.get,
                          help=None if found else "No ImageNet weights were found on this machine, so random initialisation "
                                                  "is what any run would start from; copy the weights into models/ to start "
                                                  "from ImageNet.")
    require = left.checkbox("Refuse random initialisation", help="Stop instead of training without ImageNet weights.")
    allow_missing = middle.checkbox("Train without labelled patients that have no crop")
    harmonise = right.selectbox("ComBat across centres (features, radiomics)", training.HARMONISATIONS, format_func={
        "none": "none", "training": "learned on the training patients", "transductive": "on all patients (transductive)"}.get,
        help="Harmonises the feature tables across the clinical table's 'centre' column. 'Learned on the training "
             "patients' keeps held-out patients out of it; the transductive fit uses their features too (not their "
             "labels), as many radiomics papers do, and is named so on every result.")
    with st.expander("Fine-tuning (only in the fine-tune mode): the paper's 100 epochs, batch 32 and learning rate "
                     "0.01; the rest ours, each marked"):
        a, b, c, d = st.columns(4)
        defaults = FinetuneConfig()
        epochs = a.number_input(sourced("Epochs", "epochs"), 1, 1000, defaults.epochs)
        batch_size = b.number_input(sourced("Batch", "batch_size"), 2, 1024, defaults.batch_size)
        lr = c.number_input(sourced("Learning rate", "lr"), 0.00001, 1.0, defaults.lr, format="%.5f")
        schedule = d.selectbox("Schedule — ours", SCHEDULES, help=source_of("schedule"))
        momentum = a.number_input("SGD momentum — ours", 0.0, 0.99, defaults.momentum, help=source_of("momentum"))
        weight_decay = b.number_input("Weight decay — ours", 0.0, 0.1, defaults.weight_decay, format="%.5f",
                                      help=source_of("weight_decay"))
        augment = c.checkbox("Augmentation — ours", defaults.augment, help=source_of("augment"))
        class_weighted = d.checkbox("Class weights — ours", defaults.class_weights, help=source_of("class_weights"))
        selection = st.radio("Keep the epoch with the lowest loss (the paper) on", SELECTIONS, format_func={
            "validation_loss": "the validation cohort (as the paper)", "inner_split": "an inner split of the training cohort"}.get)
        st.caption(training.SELECTION_NOTE)
        early = a.number_input("Early stopping after (epochs; 0 = off) — ours", 0, 1000, 0, help=source_of("early_stopping"))
        device = b.selectbox("Device", ["auto", "cpu", "cuda", "mps"])
        precision = c.selectbox("Precision", ["auto", "fp32", "bf16", "fp16"], help="auto: measured on CPUs")
    submitted = st.form_submit_button("Start training", type="primary", disabled=bool(missing))
if submitted:
    try:
        finetune = FinetuneConfig(epochs=int(epochs), batch_size=int(batch_size), lr=float(lr), momentum=float(momentum),
                                  weight_decay=float(weight_decay), schedule=schedule, augment=augment,
                                  class_weights=class_weighted, selection=selection, early_stopping=int(early))
        config = training.TrainConfig(
            targets=tuple(targets), backbones=tuple(backbones) or ("densenet121",), mode=mode, evaluation=evaluation,
            n_folds=n_folds, n_repeats=int(n_repeats), seed=int(seed), weights=weights, require_pretrained=require,
            allow_missing_crops=allow_missing, device=device, precision=precision, finetune=finetune,
            harmonise=harmonise if mode != "finetune" else "none")
    except CrcInputError as exc:
        _ui.show_input_error(exc)
    else:
        _jobs.start_step(workspace, "train", config)

try:
    runs = RunStore(workspace).runs()
except CrcInputError as exc:
    st.error(str(exc))
    st.stop()


def overtaken(job) -> bool:
    """A stopped or failed job whose runs went on since (resumed from here or from a terminal), or
    whose stopped run the Resume line below says all about."""
    mine = [r for r in runs if r.job_id == job.job_id]
    return all(r.status == "done" for r in mine) or (job.state == "stopped" and any(r.status == "stopped" for r in mine))


job, running = _jobs.show_job(workspace, "train", "Training", settled=overtaken)
if running or any(r.status == "running" for r in runs):
    # A run resumed from a terminal is followed here too: the store, not the job, says it runs.
    _training_views.live(str(workspace.root), followed=running)
else:
    _training_views.resume(workspace)
    _training_views.runs_table(RunStore(workspace))
    _training_views.compare(workspace)
