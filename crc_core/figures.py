"""Every plotly figure the pages show (and the report will reuse), drawn for a slide or a manuscript.

Figures carry axis titles in words with units, a readable font, and a fixed export size
(:data:`EXPORT_CONFIG`: 1600 × 900 px PNG from the chart's camera button), so what a user
downloads can go into a talk as it is. Builders take plain tables and return figures; they
compute nothing a statistic depends on.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from crc_core.errors import CrcInputError

#: Export size of every chart (width × height px at scale 1): 16:9, sharp on a projector.
EXPORT_WIDTH, EXPORT_HEIGHT = 1600, 900
#: ``st.plotly_chart(figure, config=EXPORT_CONFIG)``: the camera button saves this PNG.
EXPORT_CONFIG = {
    "displaylogo": False,
    "toImageButtonOptions": {"format": "png", "width": EXPORT_WIDTH, "height": EXPORT_HEIGHT, "scale": 1},
}
FONT_SIZE = 18
#: Colours that stay apart for colour-blind readers (Okabe-Ito): training, validation, external.
SPLIT_COLOURS = {"train": "#0072B2", "validation": "#E69F00", "external": "#009E73", "all": "#555555"}
READER_COLOURS = ("#D55E00", "#56B4E9")

#: What a column holds, in words, for axis titles.
AXIS_TITLES = {
    "tsr_percent": "Tumour-stroma ratio (% stroma)",
    "til_grade": "TIL grade (0-3)",
    "is_score": "Immune Score (0-4)",
    "time_score": "TIME score (0-3)",
    "dice": "Dice coefficient",
    "hd95_mm": "95th-percentile Hausdorff distance (mm)",
    "icc": "ICC(2,1)",
}


def axis_title(column: str) -> str:
    return AXIS_TITLES.get(column, column.replace("_", " "))


def styled(figure: go.Figure, title: str, *, height: int = 480) -> go.Figure:
    """The project's look: white background, large type, title and legend above the plot."""
    figure.update_layout(
        template="simple_white",
        title={"text": title, "x": 0.0, "xanchor": "left"},
        font={"size": FONT_SIZE},
        height=height,
        margin={"l": 80, "r": 30, "t": 80, "b": 70},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "right", "x": 1.0},
    )
    return figure


def label_distribution(frame: pd.DataFrame, column: str, split_column: str = "split") -> go.Figure:
    """Patients per value of ``column`` (a reading or score), one bar group per split."""
    if column not in frame.columns:
        raise CrcInputError(f"No column {column!r} to plot; build the labels first.")
    data = frame.assign(**{split_column: frame[split_column] if split_column in frame else "all"})
    data = data.dropna(subset=[column])
    counts = data.groupby([column, split_column]).size().rename("patients").reset_index()
    figure = go.Figure()
    for split, part in counts.groupby(split_column, sort=False):
        figure.add_bar(x=part[column], y=part["patients"], name=str(split),
                       marker_color=SPLIT_COLOURS.get(str(split)))
    figure.update_layout(barmode="group")
    figure.update_xaxes(title=axis_title(column), type="category", categoryorder="category ascending")
    figure.update_yaxes(title="Patients")
    return styled(figure, f"{axis_title(column)} by cohort")


def _check_columns(table: pd.DataFrame, columns: list[str], what: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise CrcInputError(f"The {what} table lacks {', '.join(missing)}; compute the reader agreement again.")


def mask_agreement_distribution(masks: pd.DataFrame) -> go.Figure:
    """Dice and HD95 per patient, side by side: a box with every patient as a point."""
    _check_columns(masks, ["patient_id", "dice", "hd95_mm"], "per-patient agreement")
    ok = masks.dropna(subset=["dice"])
    figure = make_subplots(rows=1, cols=2, subplot_titles=("Dice", "HD95 (mm)"), horizontal_spacing=0.18)
    for col, column in enumerate(("dice", "hd95_mm"), start=1):
        figure.add_box(y=ok[column], text=ok["patient_id"], boxpoints="all", jitter=0.4, pointpos=0,
                       marker={"color": READER_COLOURS[col - 1], "size": 6}, name=axis_title(column),
                       hovertemplate="%{text}: %{y:.3f}<extra></extra>", row=1, col=col)
    figure.update_layout(showlegend=False)
    low = float(ok["dice"].min()) if len(ok) else 0.0
    figure.update_yaxes(title="Dice (1 = identical ROIs)", range=[max(0.0, low - 0.05), 1.01], row=1, col=1)
    figure.update_yaxes(title="HD95 (mm)", rangemode="tozero", row=1, col=2)
    figure.update_xaxes(showticklabels=False)
    return styled(figure, f"Two readers' ROIs, {len(ok)} patients")


def feature_class(feature: str) -> str:
    """PyRadiomics names features ``original_<class>_<name>``."""
    parts = str(feature).split("_")
    return parts[1] if len(parts) >= 3 else "other"


def icc_by_feature_class(features: pd.DataFrame, reliable_icc: float = 0.75) -> go.Figure:
    """ICC(2,1) of every PyRadiomics feature, grouped by feature class, with the reliability line."""
    _check_columns(features, ["feature", "icc"], "feature agreement")
    scored = features.dropna(subset=["icc"]).assign(feature_class=lambda t: t["feature"].map(feature_class))
    figure = go.Figure()
    for name, part in scored.groupby("feature_class", sort=True):
        share = 100 * float((part["icc"] >= reliable_icc).mean())
        figure.add_box(y=part["icc"], name=f"{name} ({share:.0f}% ≥ {reliable_icc:g})", boxpoints="all",
                       jitter=0.4, pointpos=0, text=part["feature"], marker={"size": 5},
                       hovertemplate="%{text}: ICC %{y:.3f}<extra></extra>")
    figure.add_hline(y=reliable_icc, line_dash="dash", line_color="#333333", line_width=1.5,
                     annotation_text=f"ICC {reliable_icc:g} (good reliability)", annotation_position="bottom left")
    figure.update_yaxes(title=axis_title("icc"), range=[min(-0.1, float(scored["icc"].min()) - 0.05) if len(scored) else 0, 1.02])
    figure.update_layout(showlegend=False)
    return styled(figure, "Feature reproducibility between the two readers, by feature class")


def bland_altman(first: pd.Series, second: pd.Series, labels: pd.Series | None = None, *,
                 what: str = "ROI volume (ml)") -> go.Figure:
    """Bland & Altman (1986): the difference of two readers' measurements against their mean, with
    the mean difference (bias) and the 95% limits of agreement, bias ± 1.96 × SD of the
    differences (n − 1), as R's ``BlandAltmanLeh::bland.altman.stats``."""
    a, b = np.asarray(first, float), np.asarray(second, float)
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = a[keep], b[keep]
    if a.size < 2:
        raise CrcInputError("A Bland-Altman plot needs both readers' measurements for at least 2 patients.")
    mean, difference = (a + b) / 2, a - b
    bias, sd = float(difference.mean()), float(difference.std(ddof=1))
    text = None if labels is None else np.asarray(labels)[keep]
    figure = go.Figure(go.Scatter(x=mean, y=difference, mode="markers", text=text, name="patients",
                                  marker={"color": READER_COLOURS[0], "size": 7},
                                  hovertemplate="%{text}: mean %{x:.2f}, difference %{y:.2f}<extra></extra>"))
    for value, name, dash in ((bias, "bias", "solid"), (bias - 1.96 * sd, "lower limit of agreement", "dash"),
                              (bias + 1.96 * sd, "upper limit of agreement", "dash")):
        figure.add_hline(y=value, line_dash=dash, line_color="#333333", line_width=1.5,
                         annotation_text=f"{name} {value:.2f}", annotation_position="top left")
    figure.update_xaxes(title=f"Mean of the two readers — {what}")
    figure.update_yaxes(title=f"Reader 1 − reader 2 — {what}")
    return styled(figure, f"Bland-Altman: {what}, {a.size} patients")


# ---------------------------------------------------------------------------------------------
# Training


def training_curves(metrics: pd.DataFrame, title: str) -> go.Figure:
    """One run's loss per step and per epoch (training and selection cohort) and its selection AUC."""
    figure = make_subplots(rows=1, cols=2, subplot_titles=("Loss", "Selection-cohort AUC"), horizontal_spacing=0.12)
    steps = metrics[(metrics["scope"] == "step") & metrics["name"].str.startswith("train_loss")]
    epochs = metrics[metrics["scope"] == "epoch"]
    figure.add_scatter(x=steps["step"], y=steps["value"], mode="lines", name="training loss per step",
                       line={"color": "#BBBBBB", "width": 1}, row=1, col=1)
    for name, colour, label in (("train_loss", SPLIT_COLOURS["train"], "training loss per epoch"),
                                ("val_loss", SPLIT_COLOURS["validation"], "selection loss per epoch")):
        rows = epochs[epochs["name"].str.startswith(name)]
        figure.add_scatter(x=rows["step"], y=rows["value"], mode="lines+markers", name=label, line={"color": colour},
                           row=1, col=1)
    auc = epochs[epochs["name"].str.startswith("val_auc")]
    figure.add_scatter(x=auc["step"], y=auc["value"], mode="lines+markers", name="selection AUC",
                       line={"color": SPLIT_COLOURS["validation"]}, showlegend=False, row=1, col=2)
    figure.update_xaxes(title="Iteration (batches)")
    figure.update_yaxes(title="Cross-entropy loss", row=1, col=1)
    figure.update_yaxes(title="AUC", range=[0, 1.02], row=1, col=2)
    return styled(figure, title)


def normalised_losses(curves: dict[str, pd.DataFrame]) -> go.Figure:
    """Training loss per iteration of several runs on one chart, each curve shifted and stretched
    to run from 1 to 0 — as the paper's Figure 4 ("we have applied translation and stretching to
    different curves"), so runs of different loss scales compare by shape."""
    figure = go.Figure()
    for label, rows in curves.items():
        values = rows["value"].to_numpy(dtype=float)
        if len(values) == 0:
            continue
        low, high = np.nanmin(values), np.nanmax(values)
        scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
        figure.add_scatter(x=rows["step"], y=scaled, mode="lines", name=label)
    figure.update_xaxes(title="Iteration (batches)")
    figure.update_yaxes(title="Training loss, rescaled (1 = highest, 0 = lowest)", range=[-0.02, 1.02])
    return styled(figure, "Loss curves, normalised as the paper's Figure 4")


def auc_by_fold(aucs: pd.DataFrame, labels: dict[str, str]) -> go.Figure:
    """Every fold's or repeat's AUC per run, with its mean ± SD: the spread one split hides."""
    figure = go.Figure()
    for run_id, rows in aucs.groupby("run_id", sort=False):
        values = rows["auc"].dropna()
        name = f"{labels.get(run_id, run_id)}: {values.mean():.3f} ± {values.std(ddof=1):.3f}" if len(values) > 1 \
            else f"{labels.get(run_id, run_id)}: {values.mean():.3f}"
        figure.add_box(y=values, name=name, boxpoints="all", jitter=0.4, pointpos=0, boxmean="sd")
    figure.add_hline(y=0.5, line_dash="dot", line_color="#777777", annotation_text="chance (0.5)",
                     annotation_position="bottom left")
    figure.update_yaxes(title="AUC of each fold or repeat", range=[0, 1.02])
    figure.update_layout(showlegend=False)
    return styled(figure, "AUC across folds and repeated splits")


def penalty_curves(curves: dict[str, pd.DataFrame], c_grid: np.ndarray) -> go.Figure:
    """The fast modes' training curve: cross-validated log-loss of the logistic regression along
    the penalty path (training patients only), the chosen C at each curve's minimum."""
    figure = go.Figure()
    for label, rows in curves.items():
        mean = rows.groupby("step")["value"].mean()
        figure.add_scatter(x=c_grid[mean.index.to_numpy()], y=mean.to_numpy(), mode="lines+markers", name=label)
    figure.update_xaxes(title="Inverse penalty C (larger = weaker L2 penalty)", type="log")
    figure.update_yaxes(title="Cross-validated log-loss (training cohort)")
    return styled(figure, "Fast mode: choosing the penalty")
