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
from crc_core.cohort.table1 import p_words

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


def wrapped(text: str, width: int = 24) -> str:
    """``text`` broken into lines of about ``width`` characters at spaces (``<br>`` for plotly), so
    a category label never runs into its neighbour nor needs rotating."""
    lines, line = [], ""
    for word in str(text).split(" "):
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return "<br>".join([*lines, line])


def axis_title(column: str) -> str:
    return AXIS_TITLES.get(column, column.replace("_", " "))


def styled(figure: go.Figure, title: str, *, height: int = 480) -> go.Figure:
    """The project's look: white background, large type, title and legend above the plot."""
    figure.update_layout(
        template="simple_white",
        title={"text": title, "x": 0.0, "xref": "paper", "xanchor": "left"},
        font={"size": FONT_SIZE},
        height=height,
        margin={"l": 80, "r": 30, "t": 80, "b": 70},
        # Beside the plot, never over its title, a subplot's title or a curve.
        legend={"orientation": "v", "yanchor": "top", "y": 1.0, "xanchor": "left", "x": 1.02},
    )
    # Reference lines (add_hline) drawn visible: simple_white gives shapes no line and 30% opacity,
    # which hid the chance line of a chart (plotly.js reads shape defaults from the template only).
    figure.layout.template.layout.shapedefaults = {"line": {"width": 1.5}, "opacity": 1.0}
    return figure


def legend_below(figure: go.Figure) -> go.Figure:
    """The legend under the plot, one entry per line, for charts of several runs shown in half a
    page: beside the plot their long names squeeze the curves to a sliver. Shown even for one run,
    so a chart always says whose curve it is. The plot keeps its height; the figure grows by a
    line per entry."""
    entries = sum(1 for trace in figure.data if trace.showlegend is not False)
    height = figure.layout.height or 480
    top = figure.layout.margin.t if figure.layout.margin.t is not None else 80
    bottom = 90 + 26 * entries
    plot_height = height - top - 90  # the plot area before the legend's lines were added
    figure.update_layout(showlegend=True, height=height + 26 * entries,
                         margin={**figure.layout.margin.to_plotly_json(), "b": bottom},
                         # 70 px under the plot clears the tick labels and the axis title.
                         legend={"orientation": "v", "yanchor": "top", "y": -70 / plot_height, "xanchor": "left", "x": 0.0})
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
    figure.add_hline(y=reliable_icc, line_dash="dash", line_color="#333333", line_width=1.5)
    low = min(-0.1, float(scored["icc"].min()) - 0.05) if len(scored) else 0
    figure.update_yaxes(title=axis_title("icc"), range=[low, 1.02])
    figure.update_layout(showlegend=False)
    figure = styled(figure, "Feature reproducibility between the two readers, by feature class")
    return labels_beside(figure, [(reliable_icc, f"ICC {reliable_icc:g}<br>(good reliability)")], (low, 1.02))


#: Vertical room one label beside the plot takes (px): two lines of 14-px type.
SIDE_LABEL_PX = 36


def labels_beside(figure: go.Figure, labels: list[tuple[float, str]], y_range: tuple[float, float]) -> go.Figure:
    """Reference lines' labels (value on the y axis, text) to the right of the plot, never over its
    points: each at its line's height, moved apart (:data:`SIDE_LABEL_PX`) where lines lie close."""
    layout = figure.layout
    plot_px = (layout.height or 480) - (layout.margin.t or 0) - (layout.margin.b or 0)
    low, high = y_range
    per_px = (high - low) / plot_px if high > low else 1.0
    placed: list[float] = []  # each label's centre, px above the axis' bottom
    for value, _ in sorted(labels, key=lambda item: -item[0]):  # top down
        at = (value - low) / per_px
        if placed and placed[-1] - at < SIDE_LABEL_PX:
            at = placed[-1] - SIDE_LABEL_PX
        placed.append(at)
    for (value, text), at in zip(sorted(labels, key=lambda item: -item[0]), placed):
        figure.add_annotation(x=1.0, xref="paper", xanchor="left", xshift=8, y=value, yref="y", yanchor="middle",
                              yshift=at - (value - low) / per_px, text=text, showarrow=False, align="left",
                              font={"size": 14, "color": "#333333"})
    figure.update_layout(margin={**layout.margin.to_plotly_json(), "r": max(layout.margin.r or 0, 170)})
    return figure


def bland_altman(first: pd.Series, second: pd.Series, labels: pd.Series | None = None, *,
                 what: str = "ROI volume (ml)", subject: str = "") -> go.Figure:
    """Bland & Altman (1986): the difference of two readers' measurements against their mean, with
    the mean difference (bias) and the 95% limits of agreement, bias ± 1.96 × SD of the
    differences (n − 1), as R's ``BlandAltmanLeh::bland.altman.stats``. ``what`` names the
    measurement on the axes (short: a long one is cut off on a slide); ``subject`` goes into the title
    (the cohort, say)."""
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
    lines = ((bias + 1.96 * sd, "upper limit of<br>agreement", "dash"), (bias, "bias", "solid"),
             (bias - 1.96 * sd, "lower limit of<br>agreement", "dash"))
    for value, _, dash in lines:
        figure.add_hline(y=value, line_dash=dash, line_color="#333333", line_width=1.5)
    # The axis spans the points and the lines with a margin, so the labels beside it can be placed.
    top, bottom = max(float(difference.max()), bias + 1.96 * sd), min(float(difference.min()), bias - 1.96 * sd)
    pad = 0.08 * (top - bottom or 1.0)
    figure.update_xaxes(title=f"Mean of the two readers — {what}")
    figure.update_yaxes(title=f"Reader 1 − reader 2 — {what}", range=[bottom - pad, top + pad])
    figure = styled(figure, f"Bland-Altman: {what}, {subject + ', ' if subject else ''}{a.size} patients")
    return labels_beside(figure, [(value, f"{name} {value:.2f}") for value, name, _ in lines], (bottom - pad, top + pad))


# ---------------------------------------------------------------------------------------------
# Training


#: With more folds than this a training curve shows their mean and range, not a line each.
FOLD_LINES = 5


def _fold_label(fold: int) -> str:
    return "no fold" if fold < 0 else f"fold {fold + 1}"


def training_curves(metrics: pd.DataFrame, title: str) -> go.Figure:
    """One run's training: loss per epoch on the training and selection patients, and the
    selection AUC, against the epoch. A holdout run also shows its loss per batch; a run of a few
    folds draws one line per fold, a run of many (repeated splits) their mean with the range as a
    band. Folds never join into one line."""
    figure = make_subplots(rows=1, cols=2, subplot_titles=("Loss", "Selection-cohort AUC"), horizontal_spacing=0.12)
    epochs = metrics[metrics["scope"] == "epoch"]
    folds = sorted(int(f) for f in epochs["fold"].unique()) if "fold" in epochs else [-1]
    single = len(folds) <= 1
    if single:
        steps = metrics[(metrics["scope"] == "step") & (metrics["name"] == "train_loss")].sort_values(["epoch", "step"])
        if len(steps):
            position = steps.groupby("epoch").cumcount() + 1
            per_epoch = steps.groupby("epoch")["step"].transform("size")
            figure.add_scatter(x=steps["epoch"] + position / per_epoch, y=steps["value"], mode="lines",
                               name="training loss per batch", line={"color": "#BBBBBB", "width": 1}, row=1, col=1)
    series = (("train_loss", SPLIT_COLOURS["train"], "training loss", 1), ("val_loss", SPLIT_COLOURS["validation"],
              "selection loss", 1), ("val_auc", SPLIT_COLOURS["validation"], "selection AUC", 2))
    for name, colour, label, col in series:
        rows = epochs[epochs["name"] == name]
        if rows.empty:
            continue
        if len(folds) > FOLD_LINES:
            wide = rows.pivot_table(index="epoch", columns="fold", values="value")
            x = wide.index.to_numpy() + 1
            figure.add_scatter(x=np.r_[x, x[::-1]], y=np.r_[wide.max(axis=1), wide.min(axis=1)[::-1]], fill="toself",
                               fillcolor=colour, opacity=0.2, line={"width": 0}, hoverinfo="skip", showlegend=False,
                               row=1, col=col)
            figure.add_scatter(x=x, y=wide.mean(axis=1), mode="lines", name=f"{label}, mean of {len(folds)} (band: range)",
                               line={"color": colour}, row=1, col=col, showlegend=col == 1)
            continue
        for i, (fold, part) in enumerate(rows.groupby("fold", sort=True)):
            dash = ("solid", "dash", "dot", "dashdot", "longdash")[i % 5]
            suffix = "" if single else f", {_fold_label(int(fold))}"
            figure.add_scatter(x=part["epoch"] + 1, y=part["value"], mode="lines+markers", name=label + suffix,
                               line={"color": colour, "dash": dash}, marker={"size": 5}, row=1, col=col,
                               showlegend=col == 1 or not single)
    figure.add_hline(y=0.5, line_dash="dot", line_color="#999999", row=1, col=2)
    figure.update_xaxes(title="Epoch")
    figure.update_yaxes(title="Cross-entropy loss", row=1, col=1)
    figure.update_yaxes(title="AUC", range=[0, 1.02], row=1, col=2)
    return styled(figure, title)


def normalised_losses(curves: dict[str, pd.DataFrame]) -> go.Figure:
    """Training loss per iteration of several runs on one chart, each curve shifted and stretched
    to run from 1 to 0 — as the paper's Figure 4 ("we have applied translation and stretching to
    different curves"), so runs of different loss scales compare by shape. A run of several folds
    is drawn as the mean of its folds at each iteration."""
    figure = go.Figure()
    for label, rows in curves.items():
        mean = rows.groupby("step")["value"].mean()
        values = mean.to_numpy(dtype=float)
        if len(values) == 0:
            continue
        low, high = np.nanmin(values), np.nanmax(values)
        scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
        folds = rows["fold"].nunique() if "fold" in rows else 1
        figure.add_scatter(x=mean.index, y=scaled, mode="lines", name=label + (f" (mean of {folds} folds)" if folds > 1 else ""))
    figure.update_xaxes(title="Iteration (batches)")
    figure.update_yaxes(title="Training loss, rescaled (1 = highest, 0 = lowest)", range=[-0.02, 1.02])
    return legend_below(styled(figure, "Loss curves, normalised as the paper's Figure 4"))


def auc_by_fold(aucs: pd.DataFrame, labels: dict[str, str]) -> go.Figure:
    """Every fold's or repeat's AUC per run, with its mean ± SD: the spread one split hides. One
    row per run (its name in two short lines on the left, its mean ± SD on the right), so labels
    never run into each other however many runs are compared; the chance line at AUC 0.5 is
    labelled where it stands."""
    figure = go.Figure()
    names = []
    for run_id, rows in aucs.groupby("run_id", sort=False):
        values = rows["auc"].dropna()
        name = wrapped(labels.get(run_id, run_id), 28)
        names.append(name)
        summary = f"{values.mean():.3f} ± {values.std(ddof=1):.3f}" if len(values) > 1 else f"{values.mean():.3f}"
        figure.add_box(y=[name] * len(values), x=values, name=name, orientation="h", boxpoints="all", jitter=0.4, pointpos=0,
                       boxmean="sd", hovertemplate="AUC %{x:.3f}<extra></extra>")
        figure.add_annotation(x=1.0, xref="paper", xanchor="left", y=name, yref="y", yanchor="middle", text=summary,
                              showarrow=False, font={"size": 15})
    figure.add_vline(x=0.5, line_dash="dot", line_color="#777777")
    figure.add_annotation(x=0.5, xref="x", xanchor="center", y=1.0, yref="paper", yanchor="bottom", text="chance (0.5)",
                          showarrow=False, font={"size": 14, "color": "#555555"})
    figure.update_xaxes(title="AUC of each fold or repeat", range=[0, 1.02])
    figure.update_yaxes(autorange="reversed", categoryorder="array", categoryarray=names, automargin=True, title="")
    figure.update_layout(showlegend=False)
    figure = styled(figure, "AUC across folds and repeated splits", height=190 + 70 * max(len(names), 1))
    figure.update_layout(margin={"l": 80, "r": 150, "t": 100, "b": 70})
    return figure


def penalty_curves(curves: dict[str, pd.DataFrame], c_grid: np.ndarray) -> go.Figure:
    """The fast modes' training curve: cross-validated log-loss of the logistic regression along
    the penalty path (training patients only; a run of several folds, their mean), the chosen C
    marked at each curve's minimum."""
    figure = go.Figure()
    for i, (label, rows) in enumerate(curves.items()):
        mean = rows.groupby("step")["value"].mean()
        x, colour = c_grid[mean.index.to_numpy()], EXTRA_COLOURS[i % len(EXTRA_COLOURS)]
        figure.add_scatter(x=x, y=mean.to_numpy(), mode="lines+markers", name=label, line={"color": colour})
        best = int(np.argmin(mean.to_numpy()))
        figure.add_scatter(x=[x[best]], y=[mean.iloc[best]], mode="markers", marker={"symbol": "star", "size": 16, "color": colour},
                           name=f"chosen C = {x[best]:g}", showlegend=False, hovertemplate="chosen C = %{x:g}<extra></extra>")
    # Short titles: the chart sits in half a page (larger C = a weaker penalty, in the hover and docs).
    figure.update_xaxes(title="C, the inverse L2 penalty (★ chosen)", type="log",
                        exponentformat="none", dtick=1)
    figure.update_yaxes(title="CV log-loss, training cohort")
    return legend_below(styled(figure, "Fast mode: choosing the penalty"))


# ---------------------------------------------------------------------------------------------
# Evaluation


COHORT_COLOURS = {"train": SPLIT_COLOURS["train"], "training": SPLIT_COLOURS["train"], "validation": SPLIT_COLOURS["validation"],
                  "cv": "#CC79A7", "cross-validation": "#CC79A7"}
#: Okabe-Ito, without the yellow (unreadable on white) and the black of "treat none".
EXTRA_COLOURS = ("#009E73", "#D55E00", "#56B4E9", "#CC79A7", "#0072B2", "#E69F00", "#7F7F7F")


def _colour(name: str, i: int) -> str:
    return COHORT_COLOURS.get(name.rstrip(":"), EXTRA_COLOURS[i % len(EXTRA_COLOURS)])


def roc_curves(curves: list[tuple[str, pd.DataFrame, tuple[float, float, float]]], title: str) -> go.Figure:
    """ROC curves (label, the curve's ``sensitivity``/``specificity``, (AUC, low, high)) on one
    chart with the chance line; each legend entry carries its AUC and 95% CI."""
    figure = go.Figure()
    figure.add_scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dot", "color": "#999999"}, name="chance (AUC 0.5)")
    for i, (label, curve, (auc, low, high)) in enumerate(curves):
        ordered = curve.sort_values(["specificity", "sensitivity"], ascending=[False, True])
        figure.add_scatter(x=1 - ordered["specificity"], y=ordered["sensitivity"], mode="lines",
                           name=f"{label}: AUC {auc:.3f} ({low:.3f}-{high:.3f})", line={"color": _colour(label.split(" ")[0], i)})
    figure.update_xaxes(title="1 − specificity (false positive rate)", range=[-0.01, 1.01], constrain="domain")
    # Square, the whole unit range shown: the domain shrinks to keep the aspect, never the range.
    figure.update_yaxes(title="Sensitivity (true positive rate)", range=[-0.01, 1.01], scaleanchor="x", scaleratio=1,
                        constrain="domain")
    return styled(figure, title, height=600)


def violin(predictions: pd.DataFrame, p_values: dict[str, float], title: str) -> go.Figure:
    """Predicted probability by true class, one pair of violins per cohort (the paper's Figure 7),
    with each cohort's Mann-Whitney p."""
    figure = go.Figure()
    for label, value, side, colour in (("low", 0, "negative", "#56B4E9"), ("high", 1, "positive", "#D55E00")):
        rows = predictions[predictions["y_true"] == value]
        figure.add_violin(x=rows["cohort"].map(lambda c: f"{c} ({p_words(p_values.get(c, float('nan')))})"), y=rows["prob"],
                          side=side, name=f"true class: {label}", line_color=colour, points="all", pointpos=0,
                          jitter=0.3, marker={"size": 4}, spanmode="hard", meanline_visible=True)
    figure.update_layout(violinmode="overlay", violingap=0.15)
    figure.update_yaxes(title="Predicted probability of the high class", range=[0, 1])
    figure.update_xaxes(title="Cohort (Mann-Whitney p between the classes)")
    return styled(figure, title)


def decision_curves(curves: dict[str, pd.DataFrame], title: str, bands: dict[str, pd.DataFrame] | None = None) -> go.Figure:
    """Net benefit against the threshold probability for each model (the paper's Figure 8), with
    "treat all" and "treat none"; optional bootstrap bands."""
    figure = go.Figure()
    first = next(iter(curves.values()))
    figure.add_scatter(x=first["threshold"], y=first["treat_all"], mode="lines", name="treat all",
                       line={"color": "#777777", "dash": "dash"})
    figure.add_scatter(x=first["threshold"], y=first["treat_none"], mode="lines", name="treat none",
                       line={"color": "#000000", "width": 1})
    for i, (label, curve) in enumerate(curves.items()):
        colour = _colour(label.split(" ")[0], i)
        if bands and label in bands:
            band = bands[label]
            figure.add_scatter(x=np.r_[band["threshold"], band["threshold"][::-1]], y=np.r_[band["high"], band["low"][::-1]],
                               fill="toself", line={"width": 0}, fillcolor=colour, opacity=0.15, showlegend=False,
                               hoverinfo="skip")
        figure.add_scatter(x=curve["threshold"], y=curve["net_benefit"], mode="lines", name=label, line={"color": colour})
    top = max(float(c["net_benefit"].max()) for c in curves.values())
    figure.update_yaxes(title="Net benefit", range=[-0.05, max(0.1, top * 1.1)])
    figure.update_xaxes(title="Threshold probability")
    return styled(figure, title)


def clinical_impact(curve: pd.DataFrame, title: str) -> go.Figure:
    """Of 1000 patients, how many the model calls high-risk and how many of those truly are, per threshold."""
    figure = go.Figure()
    figure.add_scatter(x=curve["threshold"], y=curve["high_risk_per_1000"], mode="lines", name="called high-risk",
                       line={"color": "#D55E00"})
    figure.add_scatter(x=curve["threshold"], y=curve["true_positive_per_1000"], mode="lines", name="of them truly high",
                       line={"color": "#0072B2", "dash": "dash"})
    figure.update_xaxes(title="Threshold probability")
    figure.update_yaxes(title="Patients per 1000", range=[0, 1000])
    return styled(figure, title)


def calibration_plot(bins: pd.DataFrame, smooth: pd.DataFrame, probabilities: np.ndarray, stats: dict, title: str, *,
                     band: pd.DataFrame | None = None) -> go.Figure:
    """The reliability curve against the ideal line, with a histogram of the predictions beneath
    (the paper's Figure 9), the statistics in the title: the quantile bins with their Wilson 95%
    CIs (``low``/``high`` when given), the smoothed curve (``rms::val.prob``'s ``lowess(p, y,
    iter = 0)``) and, when given, its bootstrap 95% band (:func:`crc_core.metrics.calibration.calibration_band`).
    The title leads with calibration-in-the-large and names val.prob's joint intercept only beside
    the slope; Hosmer-Lemeshow comes with its weaknesses (:data:`crc_core.metrics.calibration.HL_CAVEAT`)."""
    figure = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.78, 0.22], vertical_spacing=0.04)
    figure.add_scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dot", "color": "#999999"}, name="ideal", row=1, col=1)
    if band is not None and band["low"].notna().any():
        shown = band.dropna(subset=["low", "high"])
        figure.add_scatter(x=np.concatenate([shown["predicted"], shown["predicted"][::-1]]),
                           y=np.concatenate([shown["high"].clip(0, 1), shown["low"].clip(0, 1)[::-1]]), fill="toself",
                           mode="lines", line={"width": 0}, fillcolor="rgba(213, 94, 0, 0.18)", hoverinfo="skip",
                           name="95% band of the smoothed curve (bootstrap)", row=1, col=1)
    errors = {"error_y": {"type": "data", "symmetric": False, "array": bins["high"] - bins["observed"],
                          "arrayminus": bins["observed"] - bins["low"], "color": "#0072B2", "thickness": 1.5}} \
        if {"low", "high"} <= set(bins.columns) else {}
    figure.add_scatter(x=bins["predicted"], y=bins["observed"], mode="markers+lines",
                       name=f"{len(bins)} quantile bins" + (" (Wilson 95% CI)" if errors else ""),
                       marker={"size": 9, "color": "#0072B2"}, line={"color": "#0072B2", "width": 1}, row=1, col=1, **errors)
    figure.add_scatter(x=smooth["predicted"], y=smooth["observed"].clip(0, 1), mode="lines", name="smoothed (lowess)",
                       line={"color": "#D55E00"}, row=1, col=1)
    figure.add_histogram(x=probabilities, nbinsx=40, marker_color="#888888", name="predictions", showlegend=False,
                         row=2, col=1)
    figure.update_xaxes(title="Predicted probability", range=[0, 1], row=2, col=1)
    figure.update_yaxes(title="Observed share of the high class", range=[-0.02, 1.02], row=1, col=1)
    figure.update_yaxes(title="Patients", row=2, col=1)
    figure = styled(figure, f"{title}<br><sup>{calibration_subtitle(stats)}</sup>", height=660)
    figure.update_layout(margin={"t": 125})  # the title's two lines of statistics
    return figure


def calibration_subtitle(stats: dict) -> str:
    """The calibration statistics in the words the page and the report use (two lines)."""
    citl = ""
    if stats.get("citl") is not None:
        citl = f"calibration-in-the-large {_signed_zero_free(stats['citl'], 2)}"
        if stats.get("citl_low") is not None:
            citl += f" (95% CI {_signed_zero_free(stats['citl_low'], 2)} to {_signed_zero_free(stats['citl_high'], 2)})"
        citl += " · "
    slope = "slope undefined (perfect separation)" if stats.get("separated") else \
        f"slope {stats['slope']:.2f} (intercept with slope {_signed_zero_free(stats['intercept'], 2)})"
    return (f"Brier {stats['brier']:.3f} · {citl}{slope}<br>Hosmer-Lemeshow {p_words(stats['hl_p'])} "
            f"(10 groups; depends on the grouping, little power in small cohorts) · ECE {stats['ece']:.3f}")


def _signed_zero_free(value: float, digits: int) -> str:
    """``value`` to ``digits`` decimals without a "-0.00" (a recalibrated intercept of -1e-9 is 0)."""
    text = f"{value:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def forest_plot(rows: pd.DataFrame, title: str, *, axis: str = "AUC (95% CI)", pooled: dict | None = None,
                reference: float | None = 0.5) -> go.Figure:
    """Estimates with their 95% CIs, one row each (``label``, ``value``, ``low``, ``high``, and
    optionally ``weight`` in % for the marker's size), top to bottom in the table's order; a pooled
    estimate (``value``, ``low``, ``high``, ``label``) as a diamond below — its width the CI, its
    centre the estimate, as meta-analyses draw it (``metafor::forest``); a dotted line at
    ``reference`` (chance for an AUC). The values stand in words on the right. Rows sit at 0, 1, …
    on a numeric axis labelled with their names, so the diamond has a height."""
    labels = list(rows["label"])
    positions = list(range(len(labels)))
    figure = go.Figure()
    sizes = (8 + 0.4 * rows["weight"].fillna(0).to_numpy()) if "weight" in rows else np.full(len(rows), 11)
    figure.add_scatter(x=rows["value"], y=positions, mode="markers", marker={"symbol": "square", "size": sizes, "color": "#0072B2"},
                       error_x={"type": "data", "symmetric": False, "array": rows["high"] - rows["value"],
                                "arrayminus": rows["value"] - rows["low"], "color": "#0072B2", "thickness": 2},
                       showlegend=False, text=labels, hovertemplate="%{text}: %{x:.3f}<extra></extra>")
    text = [f"{v:.3f} ({lo:.3f}-{hi:.3f})" for v, lo, hi in zip(rows["value"], rows["low"], rows["high"])]
    if pooled is not None:
        name, at = pooled.get("label", "pooled"), len(labels)
        labels.append(name)
        positions.append(at)
        figure.add_scatter(x=[pooled["low"], pooled["value"], pooled["high"], pooled["value"], pooled["low"]],
                           y=[at, at - DIAMOND_HALF_HEIGHT, at, at + DIAMOND_HALF_HEIGHT, at], mode="lines", fill="toself",
                           fillcolor="#D55E00", line={"color": "#D55E00", "width": 1}, showlegend=False, name=name,
                           hovertemplate=f"{name}: {pooled['value']:.3f}<extra></extra>")
        text.append(f"{pooled['value']:.3f} ({pooled['low']:.3f}-{pooled['high']:.3f})")
    for position, words in zip(positions, text):
        figure.add_annotation(x=1.0, xref="paper", xanchor="left", y=position, text=words, showarrow=False, font={"size": 15})
    if reference is not None:
        figure.add_vline(x=reference, line_dash="dot", line_color="#777777")
    figure.update_yaxes(autorange=False, range=[len(labels) - 0.5, -0.5], tickvals=positions, ticktext=labels, title="",
                        showgrid=False, zeroline=False)
    figure.update_xaxes(title=axis)
    figure = styled(figure, title, height=160 + 48 * len(labels))
    figure.update_layout(margin={"l": 80, "r": 220, "t": 80, "b": 70})
    return figure


#: Half the pooled diamond's height, in rows.
DIAMOND_HALF_HEIGHT = 0.3


# ---------------------------------------------------------------------------------------------
# Grad-CAM


#: The colour map of every Grad-CAM drawing (page, report, PNG/SVG): perceptually uniform, its
#: lightness rising steadily from 0 to 1, and readable with any colour vision (a rainbow such as
#: Turbo or Jet puts false edges where its hue turns, and its reds and greens merge for 1 in 12 men).
CAM_COLOURSCALE = "Inferno"


def _cam_traces(grey: np.ndarray, cam: np.ndarray, roi: np.ndarray, show_scale: bool):
    from crc_core.imaging.volumes import outline

    edge = np.argwhere(outline(roi))
    # The crop as 8-bit grey and the map as float32: a report of six panels stays a few MB.
    return [
        go.Heatmap(z=(np.clip(grey, 0, 1) * 255).astype(np.uint8)[::-1], colorscale="gray", zmin=0, zmax=255, showscale=False,
                   hoverinfo="skip"),
        go.Heatmap(z=np.asarray(cam, dtype=np.float32)[::-1], colorscale=CAM_COLOURSCALE, zmin=0, zmax=1, opacity=0.45,
                   showscale=show_scale, colorbar={"title": {"text": "Grad-CAM", "side": "right"}, "len": 0.8, "x": 1.02},
                   hovertemplate="Grad-CAM %{z:.2f}<extra></extra>"),
        go.Scatter(x=edge[:, 1], y=grey.shape[0] - 1 - edge[:, 0], mode="markers", marker={"size": 2, "color": "white"},
                   name="ROI outline", hoverinfo="skip", showlegend=False),
    ]


#: Panels per row of a Grad-CAM figure: six panels (Figure 5's) make two rows of three on a slide.
CAM_COLUMNS = 3


def cam_overlays(panels: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]], title: str) -> go.Figure:
    """Grad-CAM maps over the CT crops with the ROI outlined in white, on a grid of equal square
    panels (the paper's Figure 5: the same patient across backbones, or several patients of one
    model), one colour bar (:data:`CAM_COLOURSCALE`, 0-1) for all. Each panel: (caption, grey crop in [0, 1], map in
    [0, 1], ROI mask); a caption may break its line with ``<br>``."""
    columns = min(CAM_COLUMNS, max(len(panels), 1))
    rows = -(-len(panels) // columns)
    figure = make_subplots(rows=rows, cols=columns, subplot_titles=[p[0] for p in panels], horizontal_spacing=0.04,
                           vertical_spacing=0.16 / rows if rows > 1 else 0.0)
    for i, (_, grey, cam, roi) in enumerate(panels):
        row, col = divmod(i, columns)
        for trace in _cam_traces(grey, cam, roi, show_scale=i == 0):
            figure.add_trace(trace, row=row + 1, col=col + 1)
        axis = "" if i == 0 else str(i + 1)
        height, width = np.asarray(grey).shape
        # Fixed ranges: every panel shows its whole crop at the same size, whatever the outline spans.
        figure.update_xaxes(visible=False, row=row + 1, col=col + 1, constrain="domain", range=[-0.5, width - 0.5])
        figure.update_yaxes(visible=False, row=row + 1, col=col + 1, scaleanchor=f"x{axis}", scaleratio=1, constrain="domain",
                            range=[-0.5, height - 0.5])
    figure = styled(figure, title, height=140 + 340 * rows)
    figure.update_layout(margin={"l": 20, "r": 90, "t": 110, "b": 20})
    figure.update_annotations(font_size=13)
    return figure


#: A nomogram's x axis runs over 120 units (points -8 … 112); on the page's narrowest chart
#: (about 700 px of plot) a 15-px character takes about 1.6 of them.
NOMOGRAM_UNITS_PER_CHARACTER = 1.6
#: Where a scale's labels may stand, nearest first (px above + or below − the line).
NOMOGRAM_LABEL_SHIFTS = (13, -13, 29, -29)


def label_rows(x: np.ndarray, labels: list[str], units_per_character: float = NOMOGRAM_UNITS_PER_CHARACTER) -> list[int]:
    """For labels centred at ``x`` (axis units), the index of the row each is drawn in (0, 1, …:
    :data:`NOMOGRAM_LABEL_SHIFTS`' order): the nearest row where it touches no label already
    placed, left to right, so crowded levels never run together ("T3T2"); the least crowded row
    when all are taken."""
    x = np.asarray(x, dtype=float)
    half = np.array([len(str(label)) * units_per_character / 2 for label in labels])
    ends: list[float] = [-np.inf] * len(NOMOGRAM_LABEL_SHIFTS)  # each row's rightmost label edge so far
    rows = [0] * len(x)
    for index in np.argsort(x, kind="stable"):
        if not str(labels[index]):
            continue
        left = x[index] - half[index]
        free = [row for row, end in enumerate(ends) if end + 0.5 <= left]
        row = free[0] if free else int(np.argmin(ends))
        rows[index] = row
        ends[row] = x[index] + half[index]
    return rows


def nomogram(axes: pd.DataFrame, outcome: dict, title: str) -> go.Figure:
    """A nomogram: a points scale (0-100), one scale per variable with its values (a categorical
    variable's levels) at their points, total points, and the probability of the high class at
    round probabilities read off the total. A scale's labels stand above and below it in as many
    rows as they need never to overlap (:func:`label_rows`)."""
    terms = list(dict.fromkeys(axes["term"]))
    names = dict(zip(axes["term"], axes["scale"]))
    rows = ["Points", *[names[t] for t in terms], "Total points", "Probability of high"]
    y = {name: len(rows) - i for i, name in enumerate(rows)}
    figure = go.Figure()

    def scale_line(x, row, labels, colour):
        x = np.asarray(x, dtype=float)
        labels = [str(label) for label in labels]
        figure.add_scatter(x=x, y=[y[row]] * len(x), mode="lines+markers", marker={"symbol": "line-ns-open", "size": 12,
                           "color": colour}, line={"color": colour}, showlegend=False, hoverinfo="skip")
        for value, label, slot in zip(x, labels, label_rows(x, labels)):
            if label:
                figure.add_annotation(x=value, y=y[row], text=label, showarrow=False, font={"size": 15, "color": colour},
                                      yshift=NOMOGRAM_LABEL_SHIFTS[slot], xanchor="center", yanchor="middle")

    ticks = np.linspace(0, 100, 11)
    scale_line(ticks, "Points", [f"{t:.0f}" for t in ticks], "#333333")
    for term in terms:
        rows_t = axes[axes["term"] == term].sort_values("points")
        scale_line(rows_t["points"], names[term], rows_t["label"], "#0072B2")
    most = float(outcome.get("most_points") or max(outcome["total_points"]) or 1.0)
    total = np.asarray(outcome["total_points"], dtype=float)
    # The scale runs to the most points a patient can have, beyond its last round tick.
    scale_line(np.r_[total, most] / most * 100, "Total points", [f"{t:.0f}" for t in total] + [""], "#333333")
    at = np.asarray(outcome.get("probability_at", total), dtype=float)
    scale_line(at / most * 100, "Probability of high", [f"{p:g}" for p in outcome["probability"]], "#D55E00")
    figure.update_yaxes(tickvals=list(y.values()), ticktext=list(y.keys()), range=[0.4, len(rows) + 0.8], showgrid=False)
    figure.update_xaxes(visible=False, range=[-8, 112])
    return styled(figure, title, height=140 + 90 * len(rows))
