"""What a user takes to a lab meeting or a manuscript: the figures as PNG and SVG at publication
size, and one self-contained HTML report of a run — cohort, Table 1, labels, the models of its
target, ROC, decision, calibration and violin figures, Grad-CAM panels, the run's configuration and
the software versions — that opens offline and asks no host for anything (plotly.js is inlined,
pictures are data URLs).

Patient IDs can be replaced by pseudonyms throughout; no path of the user's machine appears in a
report (file names at most).
"""

from __future__ import annotations

import datetime as dt
import html
import io
import json
import os
import re
import secrets
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from crc_core.evaluate import cam
from crc_core.evaluate.combined_model import odds_ratio_table
from crc_core.evaluate.external import recalibration_words, recalibrations
from crc_core.configs import JsonConfig
from crc_core.errors import CrcInputError
from crc_core.figures import EXPORT_HEIGHT, EXPORT_WIDTH
from crc_core.reporting.software import PACKAGES, software_versions
from crc_core.workspace import Workspace, atomic_write_bytes, atomic_write_text

#: Publication size of exported figures (px at scale 1; PNG is written at scale 2): the size the
#: page's camera button saves, so a file from either looks the same (the tests read these names).
FIGURE_WIDTH, FIGURE_HEIGHT = EXPORT_WIDTH, EXPORT_HEIGHT


def pseudonyms(ids: list[str], seed: int | None = None) -> dict[str, str]:
    """Patient ID → "Patient 017", …: the numbers 1..n in a random order drawn from ``seed`` (a
    fresh one when None), so that a pseudonym says nothing of its ID. Numbering in row order would
    give sequential IDs back (CRC236 became Patient 236); a pseudonym never carries the number in
    its own patient's ID either."""
    unique = list(dict.fromkeys(ids))
    width = max(3, len(str(len(unique))))
    rng = np.random.default_rng(secrets.randbits(64) if seed is None else seed)
    numbers = rng.permutation(len(unique)) + 1
    own = [_id_number(pid) for pid in unique]
    for i in range(len(unique)):
        # Swap away a pseudonym that repeats its patient's own number, with a partner for whom the
        # swap repeats nothing.
        if numbers[i] == own[i]:
            for j in rng.permutation(len(unique)):
                if j != i and numbers[j] != own[i] and numbers[i] != own[j]:
                    numbers[i], numbers[j] = numbers[j], numbers[i]
                    break
    return {pid: f"Patient {number:0{width}d}" for pid, number in zip(unique, numbers)}


def _id_number(patient_id: str) -> int | None:
    digits = re.findall(r"\d+", str(patient_id))
    return int(digits[-1]) if digits else None


def pseudonym_seed(workspace: Workspace, run_id: str) -> int:
    """The seed of a run's pseudonyms: from a random key kept in the workspace (never in an
    export) and the run, so the report and the figures of one run name a patient alike, and no
    export holds what would undo them."""
    import hashlib

    key_file = Workspace.of(workspace).exports_dir / ".pseudonym-key"
    try:
        key = key_file.read_text(encoding="utf-8").strip()
    except OSError:
        key = ""
    if len(key) < 32:
        key = secrets.token_hex(32)
        atomic_write_text(key_file, key)
    return int.from_bytes(hashlib.sha256(f"{key}:{run_id}".encode()).digest()[:8], "big")


_PATH = re.compile(r"(?:[A-Za-z]:\\|/)[^\s'\"<>]*[/\\][^\s'\"<>]*")


def pseudonymised_text(text: str, names: dict[str, str]) -> str:
    """``text`` with every whole patient ID replaced by its pseudonym (longest IDs first, so that
    "CRC1" never eats into "CRC10"), and every list of them ("Patient 017, Patient 203" or
    "Patient 017 (why); Patient 203 (why)") put in pseudonym order: a list kept in the order of
    the IDs would give each pseudonym back to anyone holding the sorted IDs."""
    for real, alias in sorted(names.items(), key=lambda pair: -len(pair[0])):
        if real != alias:
            text = re.sub(rf"(?<![\w-]){re.escape(real)}(?![\w-])", alias, text)
    return _lists_in_pseudonym_order(text, names)


_LIST_SEPARATOR = r"(?:, |; )"


def _alias_pattern(names: dict[str, str]) -> str | None:
    aliases = sorted({alias for real, alias in names.items() if alias != real}, key=len, reverse=True)
    return "|".join(map(re.escape, aliases)) if aliases else None


def _lists_in_pseudonym_order(text: str, names: dict[str, str]) -> str:
    aliases = _alias_pattern(names)
    if aliases is None:
        return text
    item = rf"(?<![\w-])(?:{aliases})(?![\w-])(?: \([^()<>]*\))?"

    def ordered(match: re.Match) -> str:
        parts = re.split(f"({_LIST_SEPARATOR})", match.group(0))
        items, separators = sorted(parts[0::2]), parts[1::2]
        return "".join(piece for pair in zip(items, [*separators, ""]) for piece in pair)

    return re.sub(rf"{item}(?:{_LIST_SEPARATOR}{item})+", ordered, text)


# ---------------------------------------------------------------------------------------------
# Never in the order of the IDs
#
# A pseudonymised output lists patients by pseudonym or by value, never in the order of their
# original IDs (or of the cohort's file): whoever holds the list of IDs would otherwise pair the
# i-th ID with the i-th pseudonym (215 of 215 patients were recovered from one report's hover
# text). Tables, trace points and lists in text all pass through here.

#: Plotly traces whose points can be patients; their order draws nothing (a line's would).
_POINT_TRACES = ("scatter", "scattergl", "box", "violin", "histogram")
#: Every per-point array of those traces, moved together.
_POINT_ARRAYS = ("x", "y", "text", "hovertext", "customdata", "ids", "marker.size", "marker.color", "marker.symbol",
                 "marker.opacity", "marker.line.color", "marker.line.width", "textposition", "error_x.array",
                 "error_x.arrayminus", "error_y.array", "error_y.arrayminus")


def _property(trace, path: str) -> Any:
    try:
        return trace[path]
    except KeyError:  # a property this kind of trace does not have (plotly's error is a KeyError)
        return None


def _as_points(value: Any) -> np.ndarray | None:
    if isinstance(value, dict) and "bdata" in value:  # plotly's base64 encoding of a numeric array
        import base64

        array = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        shape = value.get("shape")
        return array.reshape([int(n) for n in str(shape).split(",")]) if shape else array
    if value is None or isinstance(value, (str, bytes, dict)) or np.ndim(value) == 0:
        return None
    if isinstance(value, np.ndarray):
        return value
    try:
        return np.asarray(list(value))
    except ValueError:  # ragged (custom data of unequal rows)
        return np.asarray(list(value), dtype=object)


def _axis_key(values: np.ndarray) -> tuple[np.ndarray, bool]:
    """A sort key for one axis' values, and whether they are categories: a categorical axis keeps
    the order its categories first appear in (plotly draws them in that order); a numeric one
    sorts by value."""
    series = pd.Series(values.tolist())
    try:
        return pd.to_numeric(series, errors="raise").to_numpy(dtype=float), False
    except (TypeError, ValueError):
        return pd.factorize(series.astype(str))[0].astype(float), True


def trace_in_pseudonym_order(trace, names: dict[str, str]) -> None:
    """Reorder, in place, the points of a plotly trace whose points may be patients: by the
    pseudonym its hover text or custom data names (within each category of a categorical axis),
    else by value. Lines, filled shapes and heatmaps are left as drawn."""
    if trace.type not in _POINT_TRACES:
        return
    if trace.type in ("scatter", "scattergl") and ("lines" in (trace.mode or "lines") or trace.fill not in (None, "none")):
        return
    arrays = {path: _as_points(_property(trace, path)) for path in _POINT_ARRAYS}
    arrays = {path: value for path, value in arrays.items() if value is not None}
    primary = next((arrays[axis] for axis in ("y", "x") if axis in arrays), None)
    if primary is None or len(primary) < 2:
        return
    n = len(primary)
    arrays = {path: value for path, value in arrays.items() if len(value) == n}
    aliases = _alias_pattern(names)
    found = None
    for path in ("text", "hovertext", "customdata"):
        if path in arrays and aliases:
            labels = [re.search(aliases, str(v)) for v in arrays[path].tolist()]
            if any(labels):
                found = np.asarray([m.group(0) if m else "" for m in labels], dtype=object)
                break
    axes = ["x", "y"] if trace.type == "histogram" or _property(trace, "orientation") == "h" else ["y", "x"]
    keyed = {axis: _axis_key(arrays[axis]) for axis in axes if axis in arrays}
    # Categories first (plotly places them in the order they first appear), then the pseudonym,
    # or the values where no pseudonym is named.
    keys = [key for key, categorical in keyed.values() if categorical]
    if found is not None:
        keys.append(pd.factorize(pd.Series(found), sort=True)[0].astype(float))
    else:
        keys.extend(key for key, categorical in keyed.values() if not categorical)
    if not keys:
        return
    order = np.lexsort(tuple(reversed(keys)))
    for path, value in arrays.items():
        trace[path] = value[order] if value.dtype.kind in "biuf" else value[order].tolist()


def figure_in_pseudonym_order(figure, names: dict[str, str]):
    """``figure`` (modified) with every trace's points in pseudonym or value order."""
    for trace in figure.data:
        trace_in_pseudonym_order(trace, names)
    return figure


def pseudonymised_frame(frame: pd.DataFrame, names: dict[str, str]) -> pd.DataFrame:
    """A table with patient IDs replaced in every text cell (and in its column names), its rows in
    the order of the first column that names patients (by pseudonym), never in the IDs' order."""
    renamed = frame.rename(columns=lambda c: pseudonymised_text(str(c), names) if isinstance(c, str) else c)
    renamed = renamed.apply(lambda column: column if pd.api.types.is_numeric_dtype(column) else
                            column.map(lambda v: pseudonymised_text(v, names) if isinstance(v, str) else v))
    aliases = _alias_pattern(names)
    if aliases is None:
        return renamed
    for column in renamed.columns:
        if pd.api.types.is_numeric_dtype(renamed[column]):
            continue
        found = renamed[column].map(lambda v: (m.group(0) if (m := re.search(aliases, v)) else None) if isinstance(v, str) else None)
        if found.notna().any():
            return renamed.assign(_order=found.fillna("")).sort_values("_order", kind="stable").drop(columns="_order") \
                .reset_index(drop=True)
    return renamed


def pseudonymised_figure(figure, names: dict[str, str]):
    """A copy of a plotly figure with patient IDs replaced in every string it holds (titles, trace
    names, hover text), leaving its binary-encoded numbers alone, and its points in pseudonym (or
    value) order, never the IDs' (:func:`figure_in_pseudonym_order`)."""
    import plotly.graph_objects as go

    def walk(value: Any, key: str = "") -> Any:
        if key == "bdata":
            return value
        if isinstance(value, str):
            return pseudonymised_text(value, names)
        if isinstance(value, dict):
            return {k: walk(v, k) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [walk(v) for v in value]
        if isinstance(value, np.ndarray) and value.dtype.kind in "OUS":
            return np.asarray([walk(v) for v in value.tolist()], dtype=object)
        return value

    return figure_in_pseudonym_order(go.Figure(walk(figure.to_plotly_json())), names)


def without_paths(value: Any) -> Any:
    """Strings with a path of this machine reduced to the file's name, recursively."""
    if isinstance(value, str):
        return _PATH.sub(lambda m: Path(m.group(0).replace("\\", "/")).name, value)
    if isinstance(value, dict):
        return {k: without_paths(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [without_paths(v) for v in value]
    return value


# ---------------------------------------------------------------------------------------------
# What the page chose


@dataclass(frozen=True)
class ReportConfig(JsonConfig):
    """What a report or a figures export shows, as the Evaluate page chose it: the run, the
    threshold rule and CI method of Table 2, the cohorts (empty: every one evaluated), whether
    patient IDs become pseudonyms, and the file (or folder) written."""

    run_id: str = ""
    threshold_rule: str = "out_of_fold"  # model_evaluation.DEFAULT_THRESHOLD_RULE
    ci_method: str = "delong"
    cohorts: tuple[str, ...] = ()
    pseudonymise: bool = False
    out: str = ""

    def __post_init__(self) -> None:
        from crc_core.evaluate.run_evaluation import THRESHOLD_RULES

        if not self.run_id:
            raise CrcInputError("Name the run to report.")
        if self.threshold_rule not in THRESHOLD_RULES:
            raise CrcInputError(f"The threshold rule must be one of {', '.join(THRESHOLD_RULES)}; got {self.threshold_rule!r}.")
        if self.ci_method not in CI_METHODS:
            raise CrcInputError(f"The AUC CI method must be one of {', '.join(CI_METHODS)}; got {self.ci_method!r}.")
        object.__setattr__(self, "cohorts", tuple(str(c) for c in self.cohorts))

    def evaluate(self, workspace: Workspace):
        """The run's one evaluation, by the rule and CI method chosen."""
        from crc_core.evaluate import run_evaluation as me
        from crc_core.runs.store import RunStore

        return me.evaluate_run(RunStore(workspace), self.run_id, threshold_rule=self.threshold_rule, ci_method=self.ci_method)

    @property
    def shown_cohorts(self) -> list[str] | None:
        return list(self.cohorts) or None


CI_METHODS = ("delong", "bootstrap")


def _as_config(config: "ReportConfig | str", **overrides: Any) -> "ReportConfig":
    if isinstance(config, ReportConfig):
        return replace(config, **{k: v for k, v in overrides.items() if v is not None}) if overrides else config
    return ReportConfig(run_id=str(config), **{k: v for k, v in overrides.items() if v is not None})


# ---------------------------------------------------------------------------------------------
# Figures as files


def export_images(figures: dict[str, Any], folder: Path, formats: tuple[str, ...] = ("png", "svg"), *,
                  names: dict[str, str] | None = None, progress: Callable[..., None] | None = None) -> list[Path]:
    """Every figure as PNG (at twice the publication size's pixels) and SVG, through plotly's static
    export (kaleido, which drives this machine's Chromium once for all of them: nothing is
    downloaded). ``names``: patient ID → pseudonym, applied to every figure first. ``progress``
    hears of each picture before it is drawn. Refuses plainly where no Chromium is installed."""
    import asyncio

    import kaleido

    if names:
        figures = {stem: pseudonymised_figure(figure, names) for stem, figure in figures.items()}
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # Written into a scratch folder beside the target, then renamed: no half-written picture is left
    # when Chromium fails midway.
    scratch = Path(tempfile.mkdtemp(dir=folder, prefix=".export-"))
    jobs = [(stem, figure, fmt) for fmt in formats for stem, figure in figures.items()]

    async def draw_all() -> None:
        async with kaleido.Kaleido(n=1) as browser:
            for i, (stem, figure, fmt) in enumerate(jobs, start=1):
                if progress:
                    progress(i - 1, len(jobs), f"{figure_name(stem)} as {fmt.upper()}: {i} of {len(jobs)}")
                errors = await browser.write_fig(
                    figure.to_dict(), path=scratch / f"{stem}.{fmt}",
                    opts={"format": fmt, "width": FIGURE_WIDTH, "height": FIGURE_HEIGHT, "scale": 2 if fmt == "png" else 1})
                if errors:
                    raise errors[0]

    written = []
    try:
        try:
            asyncio.run(draw_all())
        except CrcInputError:
            raise
        except Exception as exc:  # kaleido raises its own types when no browser can be started
            raise CrcInputError(
                f"PNG and SVG need Chromium on this machine ({type(exc).__name__}: "
                f"{(str(exc).splitlines() or [''])[0][:160]}). Install Chromium (e.g. `apt-get install chromium`), "
                "or save each chart with its camera button."
            ) from exc
        for stem, _, fmt in jobs:
            os.replace(scratch / f"{stem}.{fmt}", folder / f"{stem}.{fmt}")
            written.append(folder / f"{stem}.{fmt}")
        if progress:
            progress(len(jobs), len(jobs), f"{len(jobs)} pictures written")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return written


#: Figure names in words, by file stem (before any ``-cohort`` suffix).
FIGURE_NAMES = {"roc": "ROC", "violin": "Predicted probability by true class", "decision_curve": "Decision curve",
                "clinical_impact": "Clinical impact", "calibration": "Calibration", "nomogram": "Nomogram of the combined model",
                "gradcam": "Grad-CAM", "robustness_auc": "AUC by ROI", "robustness_bland_altman": "Bland-Altman of the readers",
                "centres": "AUC by cohort and centre", "recalibration": "Calibration after recalibration",
                "compare_aucs": "AUC across folds of the target's runs", "compare_losses": "Loss curves of the target's runs",
                "compare_penalty": "Penalty paths of the target's runs"}


def figure_name(stem: str) -> str:
    kind, _, cohort = stem.partition("-")
    name = FIGURE_NAMES.get(kind, kind)
    return f"{name}, {cohort.replace('-', ': ', 1) if cohort.startswith('external') else cohort} cohort" if cohort else name


def run_figures(workspace: Workspace, result, config: "ReportConfig | None" = None) -> dict[str, Any]:
    """Every figure of a run's evaluation by file stem, as the page draws them: ROC and violin, each
    cohort's decision curve, clinical impact and calibration; a combined model's nomogram; the
    other centres' forest plot and each labelled external cohort's calibration after recalibration
    (calibration-in-the-large); the reader check; the Compare-runs figures of the target's
    finished runs (when there are two or more); and the Grad-CAM panels of the most confident right
    and wrong calls where maps were computed."""
    from crc_core import figures
    from crc_core.evaluate import run_evaluation as me

    workspace = Workspace.of(workspace)
    out = dict(me.evaluation_figures(result, config.shown_cohorts if config else None))
    if result.run.mode == "combined":
        from crc_core.evaluate.combined_model import nomogram_figure, stored_combined

        try:
            out["nomogram"] = nomogram_figure(stored_combined(result.run), result.run.target,
                                              tuple(result.run.config.get("variables", ())))
        except CrcInputError:
            pass
    from crc_core.evaluate import external as ex

    if len(ex.held_out_cohorts(result)) > 1:
        try:
            out["centres"] = ex.centre_figure(ex.compare_centres(result), f"{result.run.target.upper()}: {result.label}, "
                                                                          "AUC by cohort and centre")
        except CrcInputError:
            pass
    for cohort, recalibrated in recalibrations(result).items():
        if config and config.shown_cohorts and cohort not in config.shown_cohorts:
            continue
        out[f"recalibration-{cohort.replace(':', '-')}"] = ex.recalibration_figure(
            recalibrated, f"{result.run.target.upper()}: {result.label}, {cohort.replace(':', ': ', 1)} cohort, "
                          "recalibrated (calibration-in-the-large)")
    from crc_core.evaluate.robustness import kept_checks, robustness_figures

    for kept in kept_checks(workspace, result.run, result.metrics):
        suffix = kept.cohort.replace(":", "-")
        out.update({f"{stem}-{suffix}": figure for stem, figure in robustness_figures(kept, result.run.target).items()})
    from crc_core.runs.views import comparison_figures
    from crc_core.runs.store import RunStore

    out.update(comparison_figures(RunStore(workspace), _compared_runs(workspace, result.run)))
    maps, cohort, cases = _cached_cam(workspace, result)
    if maps is not None:
        panels = [panel for kind in ("right", "wrong") for panel in _cam_panels(workspace, result, maps, cohort, cases[kind], kind)]
        if panels:
            out["gradcam"] = figures.cam_overlays([(caption, grey, m, roi) for caption, grey, m, roi, _ in panels],
                                                  _cam_title(result, maps, cohort))
    return out


def _compared_runs(workspace: Workspace, run) -> list[str]:
    """The finished runs of the run's target, the run first: what the Models section compares."""
    from crc_core.runs.store import RunStore

    others = [r.run_id for r in RunStore(workspace).runs(target=run.target, status="done") if r.run_id != run.run_id]
    return [run.run_id, *others]


def _cam_title(result, maps, cohort: str) -> str:
    from crc_core.runs.views import cohort_name

    method = cam.METHOD_NAMES.get(maps.meta["method"], maps.meta["method"])
    return f"{result.label}: {method} of the {maps.explained} class, {cohort_name(cohort)} cohort"


def _cached_cam(workspace: Workspace, result):
    """The first cohort of a run with cached maps (validation first), with its confident cases."""
    cohorts = ["validation", *[c for c in result.metrics if c != "validation"]]
    for cohort, method in ((c, m) for c in cohorts for m in cam.METHODS):
        try:
            maps = cam.cached_maps(workspace, result.run, cohort, method)
        except CrcInputError:
            continue
        if maps is not None:
            rows = result.predictions[result.predictions["cohort"] == cohort]
            threshold = result.metrics.get(cohort, {}).get("threshold", 0.5)
            return maps, cohort, cam.confident_cases(rows, maps, k=3, threshold=threshold)
    return None, None, None


def _cam_panels(workspace: Workspace, result, maps, cohort: str, patients: list[str], kind: str):
    """(caption, grey crop, map, ROI, patient) for each patient that still has a crop."""
    predictions = result.predictions[result.predictions["cohort"] == cohort].drop_duplicates("patient_id").set_index("patient_id")
    panels = []
    try:
        images = cam.overlay_images(workspace, result.run, maps, patients, cohort)
    except CrcInputError:  # an external centre's workspace moved: the maps stay, their crops cannot be drawn
        return []
    for patient, (grey, cam_map, roi) in images.items():
        truth = cam.CLASS_NAMES.get(predictions.loc[patient, "y_true"], "?")
        # The model's probability of the high class, in words: "p = 0.96" read as a p value.
        caption = (f"{patient}: true {truth}, predicted probability of high {predictions.loc[patient, 'prob']:.2f}"
                   f"<br>confident {kind} call")
        panels.append((caption, grey, cam_map, roi, patient))
    return panels


def images_zip(figures: dict[str, Any], *, names: dict[str, str] | None = None, progress=None) -> bytes:
    """Every figure as PNG and SVG in one zip, for a download (``names`` as in :func:`export_images`)."""
    with tempfile.TemporaryDirectory() as scratch:
        paths = export_images(figures, Path(scratch), names=names, progress=progress)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in paths:
                archive.write(path, path.name)
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------
# The report


def _table(frame: pd.DataFrame, caption: str = "") -> str:
    body = frame.to_html(index=False, escape=True, border=0, classes="data", na_rep="")
    return (f"<p class='caption'>{html.escape(caption)}</p>" if caption else "") + body


def _figure(figure) -> str:
    return figure.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False})


def _section(title: str, content: str, anchor: str) -> str:
    return f"<section id='{anchor}'><h2>{html.escape(title)}</h2>{content}</section>"


STYLE = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2rem auto;max-width:1200px;color:#222;padding:0 1rem}
h1{font-size:1.8rem} h2{border-bottom:2px solid #ddd;padding-bottom:.3rem;margin-top:2.5rem}
nav a{margin-right:1rem} table.data{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}
table.data th,table.data td{padding:.25rem .6rem;border-bottom:1px solid #e5e5e5;text-align:left}
.caption{color:#555;font-size:.9rem} .warning{background:#fff4d6;padding:.6rem 1rem;border-left:4px solid #e6a700}
pre{background:#f6f6f6;padding:1rem;overflow:auto;font-size:.8rem} dl.methods dt{font-weight:600;margin-top:.4rem}
"""
SECTIONS = (("cohort", "Cohort"), ("table1", "Table 1"), ("labels", "Labels"), ("methods", "Methods"), ("models", "Models"),
            ("table2", "Table 2"), ("figures", "Figures"), ("gradcam", "Grad-CAM"), ("robustness", "Robustness to the reader"),
            ("centres", "Other centres"), ("sample_size", "Sample size for external validation"),
            ("tripod", "TRIPOD+AI checklist"), ("configuration", "Run configuration"), ("software", "Software"))


@dataclass
class _ReportContext:
    workspace: Workspace
    run: Any
    result: Any
    names: dict[str, str]
    config: ReportConfig
    figures: dict[str, Any]

    @property
    def pseudonymise(self) -> bool:
        return self.config.pseudonymise

    def text(self, value: str) -> str:
        """HTML of tables and text with patient IDs pseudonymised when asked."""
        return pseudonymised_text(value, self.names) if self.pseudonymise else value

    def table(self, frame: pd.DataFrame, caption: str = "") -> str:
        """A table as HTML; pseudonymised when asked, its rows then in pseudonym order."""
        return _table(pseudonymised_frame(frame, self.names) if self.pseudonymise else frame, caption)

    @property
    def random_init(self) -> bool:
        return self.run.random_init


def _cohort_section(ctx: _ReportContext) -> str:
    from crc_core.workflow import cohort_summary

    summary = cohort_summary(ctx.workspace)
    split = summary.split.describe() if summary.split else "none"
    warning = ("<p class='warning'>This run started from <b>random initialisation</b> (no ImageNet weights were found): "
               "its numbers and maps are not those of the paper's ImageNet-pretrained models.</p>") if ctx.random_init else ""
    return (f"<p>{summary.patients} patients; split {html.escape(split)}. Target: <b>{html.escape(ctx.run.target.upper())}"
            f"</b>; model: <b>{html.escape(ctx.result.label)}</b>; run {html.escape(ctx.run.run_id)}"
            f"{'; patient IDs replaced by pseudonyms' if ctx.pseudonymise else ''}.</p>{warning}")


def _table_one_section(ctx: _ReportContext) -> str:
    from crc_core.cohort.join import load_workspace_cohort
    from crc_core.cohort.splits import read_split
    from crc_core.cohort.table1 import TableOneOptions, chance_note, journal_view, split_was_random, table_one, used_footnotes

    cohort = load_workspace_cohort(ctx.workspace)
    if "split" not in cohort.columns or cohort["split"].nunique() < 2:
        return "<p>No training/validation split yet (Cohort page).</p>"
    clinical = [c for c in ctx.workspace.read_clinical().columns if c not in ("patient_id", "split", "fold")]
    try:
        # The SMD beside p: between cohorts split at random, p tests chance; the SMD says how large.
        table = table_one(cohort, "split", clinical, options=TableOneOptions(smd=True))
        chance = chance_note(table, split_was_random(read_split(ctx.workspace), ctx.workspace))
    except CrcInputError as exc:
        return f"<p>{html.escape(str(exc))}</p>"
    notes = "".join(f"<p class='caption'>{html.escape(n)}</p>" for n in [*used_footnotes(table), *([chance] if chance else [])])
    return ctx.text(ctx.table(journal_view(table), "Baseline characteristics by cohort (the paper's Table 1), with the "
                                                   "standardised mean difference (SMD: pooled SD for continuous variables, "
                                                   "Yang & Dalton 2012 for categorical ones, as R tableone).") + notes)


def _labels_section(ctx: _ReportContext) -> str:
    from crc_core.labels.rules import label_prevalence, prevalence_for_people
    from crc_core.cohort.splits import read_split

    if not ctx.workspace.labels_csv.exists():
        return "<p>No labels yet (Labels page).</p>"
    split = read_split(ctx.workspace)
    prevalence = label_prevalence(ctx.workspace.read_table(ctx.workspace.labels_csv), split.table if split else None)
    return ctx.text(ctx.table(prevalence_for_people(prevalence), "Patients with each label high, by cohort."))


def _methods_section(ctx: _ReportContext) -> str:
    from crc_core.reporting.methods import methods_text

    rows = "".join(f"<dt>{html.escape(topic)}</dt><dd>{html.escape(text)}</dd>"
                   for topic, text in methods_text(ctx.run, ctx.result.threshold_rule, ctx.result.ci_method))
    return ctx.text(f"<dl class='methods'>{rows}</dl>")


def _models_section(ctx: _ReportContext, store) -> str:
    from crc_core.runs.views import runs_overview, selection_summary

    models = runs_overview(store, status="done", target=ctx.run.target)
    picked = "".join(f"<p class='caption'>{html.escape(line)}</p>"
                     for line in selection_summary(store, _compared_runs(ctx.workspace, ctx.run), ctx.run.run_id))
    compared = picked + "".join(f"<h3>{html.escape(figure_name(stem))}</h3>{_figure(ctx.figures[stem])}"
                       for stem in ("compare_aucs", "compare_losses", "compare_penalty") if stem in ctx.figures)
    return ctx.text(ctx.table(models, f"Every finished run of {ctx.run.target.upper()} in this workspace.") + compared)


def _table_two_section(ctx: _ReportContext) -> str:
    rule = ctx.result.threshold_words
    method = "DeLong" if ctx.result.ci_method == "delong" else "stratified bootstrap (2000)"
    notes = "".join(f"<p class='caption'>{html.escape(n)}</p>" for n in ctx.result.notes)
    from crc_core.evaluate import run_evaluation as me
    from crc_core.runs.views import cohort_name

    table = me.table2_for_people(ctx.result)
    if ctx.config.cohorts:
        shown = [cohort_name(c) for c in ctx.config.cohorts]
        table = table[[any(str(c).startswith(k) for k in shown) for c in table["Cohort"]]]
    return ctx.text(ctx.table(table, f"Threshold: {rule} AUC 95% CI: {method}.") + notes)


def _figures_section(ctx: _ReportContext) -> str:
    parts = [f"<h3>{html.escape(figure_name(stem))}</h3>{_calibration_caption(ctx, stem)}{_figure(figure)}"
             for stem, figure in ctx.figures.items()
             if stem not in ("gradcam", "centres") and not stem.startswith(("robustness", "compare_", "recalibration"))]
    if ctx.run.mode == "combined" and "odds_ratios" in ctx.run.info:
        from crc_core.evaluate.combined_model import (NRI_CAVEAT, added_value_table, auc_difference, auc_difference_for_people,
                                             lr_test_words)

        odds = odds_ratio_table(pd.DataFrame(ctx.run.info["odds_ratios"]))
        added, gain, words = added_value_table(ctx.run), auc_difference(ctx.workspace, ctx.run), lr_test_words(ctx.run)
        # What the clinical variables add, led by the tests that answer it: the likelihood-ratio test and
        # the AUC difference; the NRI and IDI after them, without p values (Pepe et al. 2014).
        parts.insert(0, ctx.table(odds, "Combined model: odds ratios with Wald 95% CIs, fitted on the training cohort.")
                     + (f"<p><b>{html.escape(words)}</b></p>" if words else "")
                     + (ctx.table(auc_difference_for_people(gain), "AUC of the combined model against the DL model alone on "
                                                                   "the same patients (DeLong's paired test).") if len(gain) else "")
                     + (ctx.table(added, "Reclassification against the DL model alone: category-free NRI and IDI "
                                         "(PredictABEL's definitions) with bootstrap 95% CIs.")
                        + f"<p class='caption'>{html.escape(NRI_CAVEAT)}</p>" if len(added) else ""))
    return "".join(parts)


def _calibration_caption(ctx: _ReportContext, stem: str) -> str:
    """Under a cohort's calibration figure, its statistics in the page's words
    (:func:`crc_core.evaluate.run_evaluation.calibration_words`): calibration-in-the-large first, the
    joint intercept only beside the slope, Hosmer-Lemeshow with its weaknesses."""
    from crc_core.evaluate import run_evaluation as me

    for cohort, stats in ctx.result.calibration.items():
        if stem == f"calibration-{cohort.replace(':', '-')}":
            return f"<p class='caption'>{html.escape(me.calibration_words(stats))}</p>"
    return ""


def _cam_section(ctx: _ReportContext) -> str:
    """The most confident right and wrong calls of the first cohort with cached maps (validation
    first), drawn as on the page, with the trust checks' summary."""
    from crc_core.runs.views import cohort_name

    maps, cohort, _ = _cached_cam(ctx.workspace, ctx.result)
    if maps is None or "gradcam" not in ctx.figures:
        return "<p>No Grad-CAM maps were computed for this run yet (Evaluate → Grad-CAM).</p>"
    method = cam.METHOD_NAMES.get(maps.meta["method"], maps.meta["method"])
    cascade = "".join(f"; with {html.escape(step['randomised'])} randomised, {step['median_rho']:.2f}"
                      for step in maps.meta.get("cascade", [])[1:])
    randomised = maps.meta.get("randomised", "the learned top")
    return (f"<p class='caption'>{html.escape(method)} of the <b>{maps.explained}</b> class, {html.escape(cohort_name(cohort))} "
            f"cohort, layer {html.escape(maps.meta['layer'])}; ROI outlined in white. Median share of the map inside the ROI "
            f"{cam.median(maps.roi_share):.2f} (the ROI covers {np.median(maps.roi_area):.2f} of the crop). Randomisation "
            f"check (Adebayo et al. 2018): median rank correlation with the maps of the same network with "
            f"{html.escape(randomised)} drawn at random {cam.median(maps.sanity):.2f}{cascade} (near 1: the map does not "
            f"depend on what the model learned).</p>"
            + ("<p class='warning'>Random initialisation: the backbone under these maps was never trained on images.</p>"
               if ctx.random_init else "")
            + _figure(ctx.figures["gradcam"]))


def _first_upper(text: str) -> str:
    return text[:1].upper() + text[1:]  # str.capitalize would turn "external: Lanzhou" into "External: lanzhou"


def _robustness_section(ctx: _ReportContext) -> str:
    from crc_core.evaluate.robustness import comparison_sentence, kept_checks, summary_for_people, threshold_note
    from crc_core.runs.views import cohort_name

    checks = kept_checks(ctx.workspace, ctx.run, ctx.result.metrics)
    if not checks:
        return "<p>The reader check was not run for this run (Evaluate → Robustness, or `crc-time robustness`).</p>"
    out = []
    for kept in checks:
        suffix = kept.cohort.replace(":", "-")
        notes = "".join(f"<p class='caption'>{html.escape(n)}</p>" for n in kept.notes)
        if threshold_note(kept):
            notes = f"<p class='warning'>{html.escape(threshold_note(kept))}</p>" + notes
        parts = [_figure(ctx.figures[f"{stem}-{suffix}"]) for stem in ("robustness_auc", "robustness_bland_altman")
                 if f"{stem}-{suffix}" in ctx.figures]
        out.append(ctx.table(summary_for_people(kept), f"{_first_upper(cohort_name(kept.cohort))} cohort: the run's model on "
                                                    "crops cut with reader 2's ROI and with reader 1's eroded or dilated "
                                                    "in-plane (Zwanenburg et al. 2019): each AUC's difference from reader "
                                                    "1's with DeLong's 95% CI, DeLong's paired test Holm-adjusted across the "
                                                    "ROIs (a large p is no evidence of a difference, not proof of "
                                                    "robustness), ICC(2,1) of the probabilities against reader 1's, class "
                                                    "changes at Table 2's threshold.")
                   + (f"<p>{html.escape(comparison_sentence(kept))}</p>" if comparison_sentence(kept) else "")
                   + notes + "".join(parts))
    return ctx.text("".join(out))


def _centres_section(ctx: _ReportContext) -> str:
    from crc_core.evaluate import external as ex

    try:
        comparison = ex.compare_centres(ctx.result)
    except CrcInputError as exc:
        return f"<p>{html.escape(str(exc))}</p>"
    notes = "".join(f"<p class='caption'>{html.escape(n)}</p>" for n in comparison.notes)
    # The table first: each cohort's AUC with the CI Table 2 gives it, the pooled CI named apart.
    notes = ctx.table(ex.centre_table(comparison), "AUC by held-out cohort and centre. Each cohort's CI is Table 2's; "
                                                   "the pooled CI is computed on the logit scale, where pooling "
                                                   "happens.") + notes
    figure = ctx.figures.get("centres")
    updated = []
    for cohort, recalibrated in recalibrations(ctx.result).items():
        stem = f"recalibration-{cohort.replace(':', '-')}"
        if stem in ctx.figures:
            updated.append(f"<h3>{html.escape(figure_name(stem))}</h3><p class='caption'>"
                           f"{html.escape(recalibration_words(recalibrated))}</p>{_figure(ctx.figures[stem])}")
    return ctx.text(notes + (_figure(figure) if figure is not None else "") + "".join(updated))


def _sample_size_section(ctx: _ReportContext) -> str:
    from crc_core.evaluate import external as ex

    try:
        table = ex.validation_size(ctx.result)
    except CrcInputError as exc:
        return f"<p>{html.escape(str(exc))}</p>"
    first = table.iloc[0]
    shown = ex.validation_size_in_words(table)[["Criterion", "Patients", "High class"]]
    return ctx.table(shown, f"Riley et al. 2021 (pmvalsampsize), from the {first['source_cohort']} cohort: C-statistic "
                         f"{first['cstatistic']:.3f}, prevalence {first['prevalence']:.3f}; the largest criterion is the answer.")


def _tripod_section(ctx: _ReportContext) -> str:
    from crc_core.reporting.tripod import NOTE, checklist

    return ctx.text(ctx.table(checklist(ctx.workspace, ctx.result), NOTE))


def _configuration_section(ctx: _ReportContext) -> str:
    # The other centres' folders are paths of this machine (and may hold spaces without_paths keeps).
    info = {k: v for k, v in ctx.run.info.items() if k != "external_sources"}
    configuration = {"run": ctx.run.run_id, "created": dt.datetime.fromtimestamp(ctx.run.created_at).isoformat(timespec="seconds"),
                     "target": ctx.run.target, "backbone": ctx.run.backbone, "mode": str(ctx.run.mode),
                     "config": without_paths(ctx.run.config), "info": without_paths(info),
                     "report": {k: v for k, v in ctx.config.to_dict().items() if k != "out"}}
    return ctx.text(f"<pre>{html.escape(json.dumps(configuration, indent=2, default=str))}</pre>")


def _software_section(ctx: _ReportContext) -> str:
    return _table(pd.DataFrame(list(software_versions().items()), columns=["software", "version"]))


def patient_names(workspace: Workspace, result, pseudonymise: bool) -> dict[str, str]:
    """Patient ID → the name shown: the ID itself, or its pseudonym (drawn for the run from the
    workspace's key, so a patient has the same pseudonym in a run's report and in its figures)."""
    from crc_core.cohort.join import load_workspace_cohort

    ids = list(dict.fromkeys([*load_workspace_cohort(workspace)["patient_id"].astype(str),
                              *result.predictions["patient_id"].astype(str)]))
    if not pseudonymise:
        return {p: p for p in ids}
    return pseudonyms(ids, pseudonym_seed(workspace, result.run.run_id))


def build_report(workspace: Workspace, config: "ReportConfig | str", *, pseudonymise: bool | None = None,
                 progress: Callable[..., None] | None = None) -> str:
    """The self-contained HTML report (see the module docstring) of ``config`` (a
    :class:`ReportConfig`, or a run id with the defaults)."""
    from plotly.offline import get_plotlyjs

    from crc_core.runs.store import RunStore

    workspace = Workspace.of(workspace)
    config = _as_config(config, pseudonymise=pseudonymise)
    store = RunStore(workspace)
    run = store.run(config.run_id)
    if progress:
        progress(0, len(SECTIONS), "evaluating the run")
    result = config.evaluate(workspace)
    names = patient_names(workspace, result, config.pseudonymise)
    figures = run_figures(workspace, result, config)
    if config.pseudonymise:
        figures = {stem: pseudonymised_figure(figure, names) for stem, figure in figures.items()}
    ctx = _ReportContext(workspace, run, result, names, config, figures)
    builders = {"cohort": _cohort_section, "table1": _table_one_section, "labels": _labels_section,
                "methods": _methods_section, "models": lambda c: _models_section(c, store), "table2": _table_two_section,
                "figures": _figures_section, "gradcam": _cam_section, "robustness": _robustness_section,
                "centres": _centres_section, "sample_size": _sample_size_section, "tripod": _tripod_section,
                "configuration": _configuration_section,
                "software": _software_section}
    sections = []
    for i, (anchor, title) in enumerate(SECTIONS, start=1):
        if progress:
            progress(i - 1, len(SECTIONS), f"{title}: section {i} of {len(SECTIONS)}")
        sections.append(_section(title, builders[anchor](ctx), anchor))
    title = f"CRC-TIME report: {run.target.upper()}, {result.label}"
    contents = "".join(f"<a href='#{anchor}'>{html.escape(name)}</a>" for anchor, name in SECTIONS)
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; "
            "style-src 'unsafe-inline'; img-src data:; font-src data:\">"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style>"
            f"<script type='text/javascript'>{get_plotlyjs()}</script></head><body>"
            f"<h1>{html.escape(title)}</h1><p class='caption'>Built {dt.datetime.now().isoformat(timespec='minutes')} by "
            f"CRC-TIME; everything below is in this one file.</p><nav>{contents}</nav>{''.join(sections)}</body></html>")


def write_report(workspace: Workspace, config: "ReportConfig | str", out: Path | None = None, *,
                 pseudonymise: bool | None = None, progress=None) -> Path:
    """Build the report and write it to ``out`` (default: the config's), checked first."""
    config = _as_config(config, pseudonymise=pseudonymise, out=str(out) if out else None)
    target = check_output_file(Path(config.out), suffixes=(".html", ".htm"))
    return atomic_write_text(target, build_report(workspace, config, progress=progress))


def write_figures(workspace: Workspace, config: "ReportConfig | str", out: Path | None = None, *,
                  pseudonymise: bool | None = None, progress=None) -> list[Path]:
    """Every figure of a run (:func:`run_figures`) as PNG and SVG: into a zip where the output ends
    in .zip, else into that folder. The destination is checked before anything is drawn."""
    workspace = Workspace.of(workspace)
    config = _as_config(config, pseudonymise=pseudonymise, out=str(out) if out else None)
    out = Path(config.out)
    if out.suffix.lower() == ".zip":
        check_output_file(out, suffixes=(".zip",))
    else:
        check_output_folder(out)
    if progress:
        progress(0, 1, "evaluating the run")
    result = config.evaluate(workspace)
    figures = run_figures(workspace, result, config)
    names = patient_names(workspace, result, True) if config.pseudonymise else None
    if out.suffix.lower() == ".zip":
        return [atomic_write_bytes(out, images_zip(figures, names=names, progress=progress))]
    return export_images(figures, out, names=names, progress=progress)


def check_output_file(path: Path, *, suffixes: tuple[str, ...]) -> Path:
    """A file to write: refused, in one line, when it is a folder, has another suffix, or its
    folder cannot be made or written."""
    path = Path(path)
    if not str(path).strip() or path.name in ("", ".", ".."):
        raise CrcInputError("Name the file to write (--out FILE).")
    if path.is_dir():
        raise CrcInputError(f"{path} is a folder; name a file inside it, e.g. {path / ('report' + suffixes[0])}.")
    if path.suffix.lower() not in suffixes:
        raise CrcInputError(f"{path} should end in {' or '.join(suffixes)}.")
    check_output_folder(path.parent)
    return path


def check_output_folder(folder: Path) -> Path:
    """A folder to write into, checked without making it (the writer makes it, so a refusal after
    this check leaves no folder behind); refused, in one line, when it is a file or cannot be written."""
    from crc_core.workspace import check_writable_dir

    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise CrcInputError(f"{folder} is a file, not a folder; choose a folder to write into.")
    try:
        return check_writable_dir(folder)
    except OSError as exc:
        raise CrcInputError(f"{folder} cannot be written ({exc.strerror or exc}); choose another folder.") from exc
