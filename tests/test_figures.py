"""Figures for slides: axis titles in words, the export size, and the numbers drawn checked by hand."""

from __future__ import annotations

import statistics

import pandas as pd
import pytest

from crc_core import figures
from crc_core.errors import CrcInputError


def test_every_chart_exports_at_slide_size():
    options = figures.EXPORT_CONFIG["toImageButtonOptions"]
    assert (options["width"], options["height"], options["format"]) == (1600, 900, "png")
    assert options["width"] / options["height"] == pytest.approx(16 / 9)


def test_label_distribution_counts_and_titles():
    # Found in use: a Labels chart exported at 462×300 px with "tsr_percent" as its axis title.
    frame = pd.DataFrame({"tsr_percent": [40, 40, 60, 60, 60, None], "split": ["train", "validation", "train", "train", "validation", "train"]})
    figure = figures.label_distribution(frame, "tsr_percent")
    bars = {trace.name: dict(zip(trace.x, trace.y)) for trace in figure.data}
    assert bars == {"train": {40: 1, 60: 2}, "validation": {40: 1, 60: 1}}  # counted by hand; the empty TSR left out
    assert figure.layout.xaxis.title.text == "Tumour-stroma ratio (% stroma)"
    assert figure.layout.yaxis.title.text == "Patients"
    assert figure.layout.font.size >= 16
    with pytest.raises(CrcInputError, match="No column 'til_grade'"):
        figures.label_distribution(frame, "til_grade")


def test_bland_altman_bias_and_limits_of_agreement():
    first, second = [10.0, 12.0, 14.0, 20.0], [9.0, 13.0, 12.0, 19.5]
    differences = [a - b for a, b in zip(first, second)]
    bias, sd = statistics.mean(differences), statistics.stdev(differences)
    figure = figures.bland_altman(pd.Series(first), pd.Series(second), pd.Series(["a", "b", "c", "d"]))
    lines = sorted(shape.y0 for shape in figure.layout.shapes)
    assert lines == pytest.approx([bias - 1.96 * sd, bias, bias + 1.96 * sd])
    assert list(figure.data[0].y) == pytest.approx(differences)
    assert list(figure.data[0].x) == pytest.approx([9.5, 12.5, 13.0, 19.75])
    with pytest.raises(CrcInputError, match="at least 2 patients"):
        figures.bland_altman(pd.Series([1.0]), pd.Series([2.0]))


def test_icc_by_feature_class_groups_pyradiomics_names():
    features = pd.DataFrame({
        "feature": ["original_shape_Volume", "original_shape_Sphericity", "original_glcm_Contrast", "original_firstorder_Mean"],
        "icc": [0.95, 0.6, 0.8, float("nan")],
    })
    figure = figures.icc_by_feature_class(features)
    assert [trace.name for trace in figure.data] == ["glcm (100% ≥ 0.75)", "shape (50% ≥ 0.75)"]
    assert figure.layout.yaxis.title.text == "ICC(2,1)"


def test_mask_agreement_distribution_shows_every_patient():
    masks = pd.DataFrame({"patient_id": ["a", "b", "c"], "dice": [0.8, 0.9, None], "hd95_mm": [2.0, 1.0, None]})
    figure = figures.mask_agreement_distribution(masks)
    assert [len(trace.y) for trace in figure.data] == [2, 2]
    with pytest.raises(CrcInputError, match="lacks hd95_mm"):
        figures.mask_agreement_distribution(masks.drop(columns=["hd95_mm"]))


def test_a_recalibrated_intercept_of_zero_is_printed_without_a_minus():
    # Found in use: "intercept -0.00" above the calibration plot of a model updated to its centre.
    import numpy as np

    bins = pd.DataFrame({"predicted": [0.2, 0.8], "observed": [0.2, 0.8]})
    stats = {"brier": 0.1, "citl": -1e-9, "citl_low": -0.3, "citl_high": 0.3, "intercept": -1e-9, "slope": 1.0,
             "hl_p": 0.5, "ece": 0.01}
    title = figures.calibration_plot(bins, bins, np.array([0.2, 0.8]), stats, "t").layout.title.text
    assert "calibration-in-the-large 0.00 (95% CI -0.30 to 0.30)" in title
    assert "slope 1.00 (intercept with slope 0.00)" in title
    stats["intercept"] = -0.2
    assert "(intercept with slope -0.20)" in figures.calibration_plot(bins, bins, np.array([0.2, 0.8]), stats, "t").layout.title.text


@pytest.mark.parametrize("runs", [1, 4, 12])
def test_a_legend_under_the_plot_stays_inside_the_figure_whatever_the_number_of_runs(runs):
    # Found in review: with many runs the legend was placed off the figure (y < -1 of the plot, or above it).
    frame = pd.DataFrame({"step": [1, 2, 3], "value": [0.9, 0.5, 0.4], "fold": 0})
    figure = figures.normalised_losses({f"run {i}": frame for i in range(runs)})
    layout = figure.layout
    plot_height = layout.height - layout.margin.t - layout.margin.b
    legend_top_px = -layout.legend.y * plot_height  # below the plot's bottom edge
    assert legend_top_px == pytest.approx(70)
    assert legend_top_px + 26 * runs <= layout.margin.b + 1  # every entry within the figure


def _lightness(rgb: str) -> float:
    """CIELAB L* of an sRGB colour "rgb(r, g, b)" (D65): the lightness a reader sees."""
    r, g, b = (float(v) / 255 for v in rgb[rgb.index("(") + 1:-1].split(","))
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in (r, g, b)]
    y = 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
    return 116 * (y ** (1 / 3) if y > 216 / 24389 else (24389 / 27 * y + 16) / 116) - 16


def test_grad_cam_is_drawn_in_a_perceptually_uniform_colour_map():
    """Found in use: Grad-CAM in Turbo, a rainbow whose lightness rises and falls again (false edges,
    and hot and cold alike for a colour-blind reader). The map's lightness rises steadily with the
    value, so its order survives any colour vision and a grey print; page and report draw the same."""
    import numpy as np
    from plotly.colors import sample_colorscale

    grey = np.zeros((8, 8))
    roi = np.zeros((8, 8), bool)
    roi[2:6, 2:6] = True
    figure = figures.cam_overlays([("a", grey, np.linspace(0, 1, 64).reshape(8, 8), roi)], "t")
    heatmaps = [trace for trace in figure.data if trace.type == "heatmap"]
    scale = heatmaps[1].colorscale  # the map over the grey crop
    lightness = [_lightness(c) for c in sample_colorscale([list(step) for step in scale], list(np.linspace(0, 1, 41)))]
    assert all(b > a for a, b in zip(lightness, lightness[1:])), lightness
    assert lightness[-1] - lightness[0] > 60  # the whole range from dark to light


def test_a_pooled_estimate_is_drawn_as_a_diamond_across_its_ci():
    """Found in use: the pooled AUC of the forest plot drawn as a thick bar. A meta-analysis draws it
    as a diamond: widest (its CI) at its row, pointed above and below at its estimate."""
    rows = pd.DataFrame({"label": ["validation", "external: A"], "value": [0.8, 0.7], "low": [0.7, 0.6], "high": [0.9, 0.8]})
    figure = figures.forest_plot(rows, "t", pooled={"value": 0.76, "low": 0.69, "high": 0.83, "label": "pooled"})
    ticks = dict(zip(figure.layout.yaxis.ticktext, figure.layout.yaxis.tickvals))
    assert list(ticks) == ["validation", "external: A", "pooled"]
    diamond = [t for t in figure.data if t.fill == "toself"][0]
    row = ticks["pooled"]
    corners = sorted(zip(diamond.x, diamond.y))
    assert (min(diamond.x), max(diamond.x)) == (0.69, 0.83)  # its width: the CI
    assert [y for x, y in corners if x in (0.69, 0.83)] == [row, row, row]  # the ends at the row (closed polygon)
    tips = sorted(y for x, y in zip(diamond.x, diamond.y) if x == 0.76)
    assert tips[0] < row < tips[-1] and tips[-1] - tips[0] >= 0.4  # a height: a diamond, not a bar
    assert figure.layout.yaxis.range[0] > figure.layout.yaxis.range[1]  # the table's order, top to bottom


def test_auc_across_folds_labels_stand_apart_and_chance_is_labelled_on_its_line():
    """Found in use: with several runs the mean ± SD labels ran into each other above the boxes, and
    "chance (0.5)" stood under its line (near 0.33 on a short chart)."""
    import numpy as np

    rng = np.random.default_rng(0)
    runs = [f"run{i}" for i in range(8)]
    aucs = pd.DataFrame([{"run_id": r, "auc": v} for r in runs for v in rng.uniform(0.55, 0.9, 5)])
    figure = figures.auc_by_fold(aucs, {r: f"DenseNet-121 (frozen features) k-fold {r}" for r in runs})
    summaries = [a for a in figure.layout.annotations if "±" in a.text]
    assert len(summaries) == 8 and len({a.y for a in summaries}) == 8  # one row each: never side by side
    boxes = [t for t in figure.data if t.type == "box"]
    for box, note in zip(boxes, summaries):
        values = np.asarray(box.x if box.orientation == "h" else box.y, dtype=float)
        assert note.text == f"{values.mean():.3f} ± {values.std(ddof=1):.3f}"
    chance = [a for a in figure.layout.annotations if a.text.startswith("chance")][0]
    line = [s for s in figure.layout.shapes if s.line.dash == "dot"][0]
    assert_drawn(figure, line)
    # The label is centred on the line, along the AUC axis.
    if line.x0 == line.x1:  # a vertical line: AUC on x
        assert line.x0 == 0.5 and chance.x == 0.5 and chance.xref == "x" and chance.xanchor == "center"
    else:
        assert line.y0 == 0.5 and chance.y == 0.5 and chance.yref == "y" and chance.yanchor == "middle"


def assert_drawn(figure, shape) -> None:
    """A line plotly.js draws visibly: its own width or the template's default (simple_white's is 0,
    at 30% opacity), opaque."""
    defaults = figure.layout.template.layout.shapedefaults
    width = shape.line.width if shape.line.width is not None else defaults.line.width
    opacity = shape.opacity if shape.opacity is not None else defaults.opacity
    assert width and width > 0 and (opacity is None or opacity >= 0.8), (width, opacity)


def _outside_the_plot(annotation) -> bool:
    return annotation.xref == "paper" and annotation.x >= 1.0 and annotation.xanchor == "left"


def test_bland_altman_and_icc_labels_stand_beside_the_plot_not_over_its_points():
    """Found in use: "bias 0.12" and the limits' labels written over the patients' points (and the
    ICC line's over the features). They stand right of the plot, at their lines' heights, apart."""
    import numpy as np

    rng = np.random.default_rng(1)
    first = rng.normal(0, 1, 40)
    second = first + rng.normal(0.05, 0.02, 40)  # close limits: the labels must move apart
    figure = figures.bland_altman(pd.Series(first), pd.Series(second), pd.Series([f"P{i}" for i in range(40)]))
    notes = list(figure.layout.annotations)
    assert len(notes) == 3 and all(_outside_the_plot(n) for n in notes)
    for shape in figure.layout.shapes:
        assert_drawn(figure, shape)
    plot_px = figure.layout.height - figure.layout.margin.t - figure.layout.margin.b
    low, high = figure.layout.yaxis.range
    centres = sorted((n.y - low) / (high - low) * plot_px + (n.yshift or 0) for n in notes)
    assert min(np.diff(centres)) >= 30  # two lines of 14-px type each
    words = " ".join(n.text for n in notes)
    assert "bias" in words and "upper limit" in words and "lower limit" in words
    assert min(figure.data[0].y) >= low and max(figure.data[0].y) <= high  # every point inside the axis

    features = pd.DataFrame({"feature": ["original_shape_Volume", "original_glcm_Contrast"], "icc": [0.95, 0.7]})
    icc = figures.icc_by_feature_class(features)
    assert [_outside_the_plot(n) for n in icc.layout.annotations] == [True]
    assert icc.layout.annotations[0].y == 0.75 and "good reliability" in icc.layout.annotations[0].text
