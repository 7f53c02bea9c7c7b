"""What a user takes to a lab meeting or a manuscript: the figures as PNG and SVG at publication
size, and one self-contained HTML report of a run — cohort, Table 1, labels, the models of its
target, ROC, decision, calibration and violin figures, Grad-CAM panels, the run's configuration and
the software versions — that opens offline and asks no host for anything (plotly.js is inlined,
pictures are data URLs).

Patient IDs can be replaced by pseudonyms throughout; no path of the user's machine appears in a
report (file names at most).
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json
import os
import platform
import re
import shutil
import tempfile
import zipfile
from importlib import metadata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from crc_core import cam
from crc_core.combined_model import odds_ratio_table
from crc_core.errors import CrcInputError
from crc_core.figures import EXPORT_HEIGHT, EXPORT_WIDTH
from crc_core.workspace import Workspace, atomic_write_bytes, atomic_write_text

PACKAGES = ("numpy", "pandas", "scipy", "statsmodels", "scikit-learn", "torch", "torchvision", "SimpleITK", "plotly",
            "streamlit", "pyradiomics-bhklab")
#: Publication size of exported figures (px at scale 1; PNG is written at scale 2): the size the
#: page's camera button saves, so a file from either looks the same (the tests read these names).
FIGURE_WIDTH, FIGURE_HEIGHT = EXPORT_WIDTH, EXPORT_HEIGHT


def software_versions() -> dict[str, str]:
    import crc_core

    from crc_core.training import code_version

    versions = {"CRC-TIME": code_version() or crc_core.__version__, "Python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def pseudonyms(ids: list[str]) -> dict[str, str]:
    """Patient ID → "Patient 001", … in the order given (stable for one report)."""
    width = max(3, len(str(len(ids))))
    return {pid: f"Patient {i:0{width}d}" for i, pid in enumerate(dict.fromkeys(ids), start=1)}


_PATH = re.compile(r"(?:[A-Za-z]:\\|/)[^\s'\"<>]*[/\\][^\s'\"<>]*")


def pseudonymised_text(text: str, names: dict[str, str]) -> str:
    """``text`` with every whole patient ID replaced by its pseudonym (longest IDs first, so that
    "CRC1" never eats into "CRC10")."""
    for real, alias in sorted(names.items(), key=lambda pair: -len(pair[0])):
        if real != alias:
            text = re.sub(rf"(?<![\w-]){re.escape(real)}(?![\w-])", alias, text)
    return text


def pseudonymised_figure(figure, names: dict[str, str]):
    """A copy of a plotly figure with patient IDs replaced in every string it holds (titles, trace
    names, hover text), leaving its binary-encoded numbers alone."""
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

    return go.Figure(walk(figure.to_plotly_json()))


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
# Figures as files


def export_images(figures: dict[str, Any], folder: Path, formats: tuple[str, ...] = ("png", "svg"), *,
                  names: dict[str, str] | None = None) -> list[Path]:
    """Every figure as PNG (at twice the publication size's pixels) and SVG, through plotly's static
    export (kaleido, which drives this machine's Chromium: nothing is downloaded). ``names``: patient
    ID → pseudonym, applied to every figure first. Refuses plainly where no Chromium is installed."""
    import plotly.io as pio

    if names:
        figures = {stem: pseudonymised_figure(figure, names) for stem, figure in figures.items()}
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # Written into a scratch folder beside the target, then renamed: no half-written picture is left
    # when Chromium fails midway.
    scratch = Path(tempfile.mkdtemp(dir=folder, prefix=".export-"))
    written = []
    try:
        for fmt in formats:
            paths = [scratch / f"{stem}.{fmt}" for stem in figures]
            try:
                pio.write_images(list(figures.values()), paths, format=fmt, width=FIGURE_WIDTH, height=FIGURE_HEIGHT,
                                 scale=2 if fmt == "png" else 1)
            except Exception as exc:  # kaleido raises its own types when no browser can be started
                raise CrcInputError(
                    f"PNG and SVG need Chromium on this machine ({type(exc).__name__}: "
                    f"{(str(exc).splitlines() or [''])[0][:160]}). Install Chromium (e.g. `apt-get install chromium`), "
                    "or save each chart with its camera button."
                ) from exc
            for path in paths:
                os.replace(path, folder / path.name)
                written.append(folder / path.name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return written


def run_figures(workspace: Workspace, run_id: str, *, result=None, gradcam: bool = True) -> dict[str, Any]:
    """Every figure of a run by file stem: ROC, violin, decision and calibration curves; the
    Grad-CAM panels of its most confident right and wrong calls (where maps were computed, and
    unless ``gradcam`` is False: the report draws them as pictures of its own); and a combined
    model's nomogram."""
    from crc_core import figures
    from crc_core import model_evaluation as me
    from crc_core.runs import RunStore

    workspace = Workspace.of(workspace)
    store = RunStore(workspace)
    result = result or me.evaluate_run(store, run_id)
    out = dict(me.evaluation_figures(result))
    maps, cohort, cases = _cached_cam(workspace, result) if gradcam else (None, None, None)
    if maps is not None:
        panels = [panel for kind in ("right", "wrong") for panel in _cam_panels(workspace, result, maps, cohort, cases[kind], kind)]
        if panels:
            explained = maps.explained
            random_note = ", random initialisation" if not result.run.pretrained else ""
            method = cam.METHOD_NAMES.get(maps.meta["method"], maps.meta["method"])
            out["gradcam"] = figures.cam_overlays([(caption, grey, m, roi) for caption, grey, m, roi, _ in panels],
                                                  f"{result.label}: {method} of the {explained} class, "
                                                  f"{cohort} cohort{random_note}")
    if result.run.mode == "combined":
        from crc_core.combined_model import nomogram_figure, stored_combined

        try:
            out["nomogram"] = nomogram_figure(stored_combined(result.run), result.run.target,
                                              tuple(result.run.config.get("variables", ())))
        except CrcInputError:
            pass
    return out


def _cached_cam(workspace: Workspace, result):
    """The first cohort of a run with cached maps (validation first), with its confident cases."""

    cohorts = ["validation", *[c for c in result.metrics if c != "validation"]]
    for cohort, method in ((c, m) for c in cohorts for m in cam.METHODS):
        try:
            maps = cam.read_cohort_maps(cam.cam_cache_path(workspace, result.run.run_id, cohort, method))
        except CrcInputError:
            continue
        if maps is not None:
            rows = result.predictions[result.predictions["cohort"] == cohort]
            threshold = result.metrics.get(cohort, {}).get("threshold", 0.5)
            return maps, cohort, cam.confident_cases(rows, maps, k=3, threshold=threshold)
    return None, None, None


def _cam_panels(workspace: Workspace, result, maps, cohort: str, patients: list[str], kind: str):
    """(caption, grey crop, map, ROI, patient) for each patient that still has a crop."""
    predictions = result.predictions[result.predictions["cohort"] == cohort].set_index("patient_id")
    panels = []
    for patient, (grey, cam_map, roi) in cam.overlay_images(workspace, result.run, maps, patients).items():
        truth = cam.CLASS_NAMES.get(predictions.loc[patient, "y_true"], "?")
        caption = f"{patient}: true {truth}, p = {predictions.loc[patient, 'prob']:.2f} ({kind})"
        panels.append((caption, grey, cam_map, roi, patient))
    return panels


def images_zip(figures: dict[str, Any], *, names: dict[str, str] | None = None) -> bytes:
    """Every figure as PNG and SVG in one zip, for a download (``names`` as in :func:`export_images`)."""
    with tempfile.TemporaryDirectory() as scratch:
        paths = export_images(figures, Path(scratch), names=names)
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


def _png_data_url(rgb: np.ndarray) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _section(title: str, content: str, anchor: str) -> str:
    return f"<section id='{anchor}'><h2>{html.escape(title)}</h2>{content}</section>"


STYLE = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2rem auto;max-width:1200px;color:#222;padding:0 1rem}
h1{font-size:1.8rem} h2{border-bottom:2px solid #ddd;padding-bottom:.3rem;margin-top:2.5rem}
nav a{margin-right:1rem} table.data{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}
table.data th,table.data td{padding:.25rem .6rem;border-bottom:1px solid #e5e5e5;text-align:left}
.caption{color:#555;font-size:.9rem} .warning{background:#fff4d6;padding:.6rem 1rem;border-left:4px solid #e6a700}
.cams{display:flex;flex-wrap:wrap;gap:1rem} .cams figure{margin:0;width:220px;font-size:.8rem}
.cams img{width:220px;image-rendering:pixelated} .colourbar{display:flex;align-items:center;gap:.5rem;font-size:.8rem}
.colourbar span.bar{display:inline-block;width:220px;height:12px}
pre{background:#f6f6f6;padding:1rem;overflow:auto;font-size:.8rem}
"""
#: The map's colours, dark (no evidence) to red (strongest evidence for the class explained).
CAM_STOPS = np.array([[48, 18, 59], [40, 120, 240], [30, 220, 180], [200, 230, 60], [250, 120, 20], [122, 4, 3]], float)
SECTIONS = (("cohort", "Cohort"), ("table1", "Table 1"), ("labels", "Labels"), ("models", "Models"), ("table2", "Table 2"),
            ("figures", "Figures"), ("gradcam", "Grad-CAM"), ("configuration", "Run configuration"), ("software", "Software"))


@dataclass
class _ReportContext:
    workspace: Workspace
    run: Any
    result: Any
    names: dict[str, str]
    pseudonymise: bool

    def text(self, value: str) -> str:
        """HTML of tables and text with patient IDs pseudonymised when asked."""
        return pseudonymised_text(value, self.names) if self.pseudonymise else value

    @property
    def random_init(self) -> bool:
        return not self.run.pretrained and self.run.mode != "radiomics"


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
    from crc_core.cohort import load_workspace_cohort
    from crc_core.stats import journal_view, table_one, used_footnotes

    cohort = load_workspace_cohort(ctx.workspace)
    if "split" not in cohort.columns or cohort["split"].nunique() < 2:
        return "<p>No training/validation split yet (Cohort page).</p>"
    clinical = [c for c in ctx.workspace.read_clinical().columns if c not in ("patient_id", "split", "fold")]
    try:
        table = table_one(cohort, "split", clinical)
    except CrcInputError as exc:
        return f"<p>{html.escape(str(exc))}</p>"
    notes = "".join(f"<p class='caption'>{html.escape(n)}</p>" for n in used_footnotes(table))
    return ctx.text(_table(journal_view(table), "Baseline characteristics by cohort (the paper's Table 1).") + notes)


def _labels_section(ctx: _ReportContext) -> str:
    from crc_core.labels import label_prevalence
    from crc_core.splits import read_split

    if not ctx.workspace.labels_csv.exists():
        return "<p>No labels yet (Labels page).</p>"
    split = read_split(ctx.workspace)
    prevalence = label_prevalence(ctx.workspace.read_table(ctx.workspace.labels_csv), split.table if split else None)
    return ctx.text(_table(prevalence, "Patients with each label high, by cohort."))


def _models_section(ctx: _ReportContext, store) -> str:
    from crc_core.training import runs_overview

    models = runs_overview(store)
    models = models[models["target"] == ctx.run.target].drop(columns=["run_id"])
    return ctx.text(_table(models, f"Every run of {ctx.run.target.upper()} in this workspace."))


def _table_two_section(ctx: _ReportContext) -> str:
    rule = ("Youden's optimum on the training cohort, applied unchanged to the others." if ctx.result.threshold_rule == "training"
            else "each cohort's own optimum (optimistic).")
    notes = "".join(f"<p class='caption'>{html.escape(n)}</p>" for n in ctx.result.notes)
    return ctx.text(_table(ctx.result.table2().round(3), "Threshold: " + rule) + notes)


def _figures_section(ctx: _ReportContext) -> str:
    titles = {"roc": "ROC", "violin": "Predicted probability by true class", "decision_curve": "Decision curve",
              "calibration": "Calibration", "nomogram": "Nomogram of the combined model"}
    figures = run_figures(ctx.workspace, ctx.run.run_id, result=ctx.result, gradcam=False)
    if ctx.pseudonymise:
        figures = {stem: pseudonymised_figure(figure, ctx.names) for stem, figure in figures.items()}
    parts = [f"<h3>{titles.get(stem, stem)}</h3>{_figure(figure)}" for stem, figure in figures.items()]
    if ctx.run.mode == "combined" and "odds_ratios" in ctx.run.info:
        odds = odds_ratio_table(pd.DataFrame(ctx.run.info["odds_ratios"]))
        parts.insert(0, _table(odds, "Combined model: odds ratios with Wald 95% CIs, fitted on the training cohort."))
    return "".join(parts)


def _cam_picture(grey: np.ndarray, cam: np.ndarray, roi: np.ndarray) -> np.ndarray:
    """A crop with its map blended in and the ROI outlined in white."""
    from crc_core.imaging import outline

    position = np.clip(cam, 0, 1) * (len(CAM_STOPS) - 1)
    low = np.floor(position).astype(int).clip(0, len(CAM_STOPS) - 2)
    fraction = (position - low)[..., None]
    colour = CAM_STOPS[low] * (1 - fraction) + CAM_STOPS[low + 1] * fraction
    base = np.repeat((np.clip(grey, 0, 1) * 255)[..., None], 3, axis=-1)
    blended = (0.55 * base + 0.45 * colour).clip(0, 255).astype(np.uint8)
    blended[outline(roi)] = (255, 255, 255)
    return blended


def _cam_section(ctx: _ReportContext) -> str:
    """The most confident right and wrong calls of the first cohort with cached maps (validation
    first), with the trust checks' summary."""
    maps, cohort, cases = _cached_cam(ctx.workspace, ctx.result)
    if maps is None:
        return "<p>No Grad-CAM maps were computed for this run yet (Evaluate → Grad-CAM).</p>"
    pictures = []
    for kind in ("right", "wrong"):
        for caption, grey, cam_map, roi, patient in _cam_panels(ctx.workspace, ctx.result, maps, cohort, cases[kind], kind):
            name = html.escape(ctx.names[patient])
            caption = html.escape(pseudonymised_text(caption, ctx.names) if ctx.pseudonymise else caption)
            pictures.append(f"<figure><img src='{_png_data_url(_cam_picture(grey, cam_map, roi))}' alt='Grad-CAM of {name}'>"
                            f"<figcaption>{caption}: confident {kind} call{'; random init' if ctx.random_init else ''}"
                            "</figcaption></figure>")
    explained = maps.explained
    colours = ",".join(f"rgb({r:.0f},{g:.0f},{b:.0f})" for r, g, b in CAM_STOPS)
    method = cam.METHOD_NAMES.get(maps.meta["method"], maps.meta["method"])
    return (f"<p class='caption'>{html.escape(method)} of the <b>{explained}</b> class, {html.escape(cohort)} "
            f"cohort, layer {html.escape(maps.meta['layer'])}; ROI outlined in white. Median share of the map inside the ROI "
            f"{np.nanmedian(maps.roi_share):.2f} (the ROI covers {np.median(maps.roi_area):.2f} of the crop); median rank "
            f"correlation with the same network re-initialised {np.nanmedian(maps.sanity):.2f} (near 1: the map does not "
            f"depend on what the model learned).</p>"
            + ("<p class='warning'>Random initialisation: these maps show an untrained backbone.</p>" if ctx.random_init else "")
            + f"<div class='colourbar'>0<span class='bar' style='background:linear-gradient(to right,{colours})'></span>1"
            f" (evidence for the {explained} class)</div><div class='cams'>{''.join(pictures)}</div>")


def _configuration_section(ctx: _ReportContext) -> str:
    configuration = {"run": ctx.run.run_id, "created": dt.datetime.fromtimestamp(ctx.run.created_at).isoformat(timespec="seconds"),
                     "target": ctx.run.target, "backbone": ctx.run.backbone, "mode": ctx.run.mode,
                     "config": without_paths(ctx.run.config), "info": without_paths(ctx.run.info)}
    return ctx.text(f"<pre>{html.escape(json.dumps(configuration, indent=2, default=str))}</pre>")


def _software_section(ctx: _ReportContext) -> str:
    return _table(pd.DataFrame(list(software_versions().items()), columns=["software", "version"]))


def patient_names(workspace: Workspace, result, pseudonymise: bool) -> dict[str, str]:
    """Patient ID → the name shown: the ID itself, or its pseudonym (numbered in the cohort's order,
    so a patient has the same pseudonym in a run's report and in its figures)."""
    from crc_core.cohort import load_workspace_cohort

    ids = list(dict.fromkeys([*load_workspace_cohort(workspace)["patient_id"].astype(str),
                              *result.predictions["patient_id"].astype(str)]))
    return pseudonyms(ids) if pseudonymise else {p: p for p in ids}


def build_report(workspace: Workspace, run_id: str, *, pseudonymise: bool = False,
                 progress: Callable[[int, int], None] | None = None) -> str:
    """The self-contained HTML report of ``run_id`` (see the module docstring)."""
    from plotly.offline import get_plotlyjs

    from crc_core import model_evaluation as me
    from crc_core.runs import RunStore

    workspace = Workspace.of(workspace)
    store = RunStore(workspace)
    run = store.run(run_id)
    result = me.evaluate_run(store, run_id)
    names = patient_names(workspace, result, pseudonymise)
    ctx = _ReportContext(workspace, run, result, names, pseudonymise)
    builders = {"cohort": _cohort_section, "table1": _table_one_section, "labels": _labels_section,
                "models": lambda c: _models_section(c, store), "table2": _table_two_section, "figures": _figures_section,
                "gradcam": _cam_section, "configuration": _configuration_section, "software": _software_section}
    sections = []
    for i, (anchor, title) in enumerate(SECTIONS, start=1):
        sections.append(_section(title, builders[anchor](ctx), anchor))
        if progress:
            progress(i, len(SECTIONS))
    title = f"CRC-TIME report: {run.target.upper()}, {result.label}"
    contents = "".join(f"<a href='#{anchor}'>{html.escape(name)}</a>" for anchor, name in SECTIONS)
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; "
            "style-src 'unsafe-inline'; img-src data:; font-src data:\">"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style>"
            f"<script type='text/javascript'>{get_plotlyjs()}</script></head><body>"
            f"<h1>{html.escape(title)}</h1><p class='caption'>Built {dt.datetime.now().isoformat(timespec='minutes')} by "
            f"CRC-TIME; everything below is in this one file.</p><nav>{contents}</nav>{''.join(sections)}</body></html>")


def write_report(workspace: Workspace, run_id: str, out: Path, *, pseudonymise: bool = False, progress=None) -> Path:
    return atomic_write_text(Path(out), build_report(workspace, run_id, pseudonymise=pseudonymise, progress=progress))


def write_figures(workspace: Workspace, run_id: str, out: Path, *, pseudonymise: bool = False) -> list[Path]:
    """Every figure of a run (:func:`run_figures`) as PNG and SVG: into a zip where ``out`` ends in
    .zip, else into that folder."""
    from crc_core import model_evaluation as me
    from crc_core.runs import RunStore

    workspace = Workspace.of(workspace)
    result = me.evaluate_run(RunStore(workspace), run_id)
    figures = run_figures(workspace, run_id, result=result)
    names = patient_names(workspace, result, True) if pseudonymise else None
    out = Path(out)
    if out.suffix.lower() == ".zip":
        return [atomic_write_bytes(out, images_zip(figures, names=names))]
    return export_images(figures, out, names=names)
