"""The Evaluate page in a meeting: the sample with a features run, its Grad-CAM maps, the reader
check and an external cohort (a second hospital predicted by the run), driven by Streamlit's
AppTest — the first render, a click on the view bar, and a click inside a view (median over every
click of `CLICKS`), for the page as it is (only the chosen view drawn) and for every view drawn on
each run (the page before issue 27, the same views in `st.tabs`), with the ratio. Goal: a click
inside a view ≤ 1 s. Prints the figures; never asserts on time.

    .venv/bin/python bench/evaluate_page.py [--smoke] [--workspace DIR]

``--smoke``: 48 patients at 32 px, a ResNet-34 from random weights, one click each (a minute on a
laptop; the test suite runs it). Without ImageNet weights in models/ the full run's network is
randomly initialised: the time is the same, the maps mean nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

#: The page before issue 27: the same header, then every view drawn, one per tab, on every run.
EVERY_VIEW_PAGE = """
import streamlit as st
from pages import _evaluation_views as views

context = views.open_run()
tabs = st.tabs([label for label, _ in views.VIEWS.values()])
for tab, (_, draw) in zip(tabs, views.VIEWS.values()):
    with tab:
        draw(context)
"""


@dataclass(frozen=True)
class Click:
    """One click inside a view: the view, the widget (by key) and the value it is set to."""

    view: str
    key: str
    value: object


def build_workspace(folder: Path, *, smoke: bool) -> tuple[Path, str]:
    """The sample with labels and crops, a TSR features run, its Grad-CAM maps of the validation
    cohort, its reader check and a second hospital's cohort predicted by it. Returns the workspace
    and the run."""
    from crc_core.evaluate import cam
    from crc_core.evaluate import robustness as rb
    from crc_core.imaging.volumes import PreprocessConfig
    from crc_core.labels.rules import label_workspace
    from crc_core.evaluate.predict import predict_cohort
    from crc_core.imaging.preprocess import preprocess_cohort
    from crc_core.sample.cohort import SampleConfig, build_sample_workspace
    from crc_core.training.grid import TrainConfig, train_run
    from crc_core.workspace import Workspace

    root = folder / "workspace"
    workers = 1 if smoke else None
    build_sample_workspace(root, SampleConfig(n_patients=48 if smoke else None, workers=workers))
    label_workspace(root)
    preprocess_cohort(root, PreprocessConfig(size=32 if smoke else 224), workers=workers)
    quick = dict(weights="random", backbones=("resnet34",), precision="fp32") if smoke else dict(backbones=("densenet121",))
    run_id = train_run(root, TrainConfig(targets=("tsr",), device="cpu", **quick))
    # 32-px crops end in a 1 × 1 map at the last block: an earlier stage, as the page offers.
    cam.cohort_maps(root, run_id, "validation", layer="backbone.layer2" if smoke else None)
    rb.keep_robustness(Workspace(root), rb.robustness(root, run_id))
    centre = folder / "lanzhou"
    build_sample_workspace(centre, SampleConfig(centre="Lanzhou", n_patients=24 if smoke else None, workers=workers))
    predict_cohort(root, run_id, centre, "Lanzhou")
    return root, run_id


#: Clicks a presenter makes inside the views: a cohort, a patient filter, an update method, a
#: checkbox; each view opened first.
CLICKS = (
    Click("calibration", "calibration_cohort", "external:Lanzhou"),
    Click("calibration", "calibration_cohort", "validation"),
    Click("decision", "decision_cohort", "external:Lanzhou"),
    Click("grad-cam", "cam_filter", "wrong"),
    Click("grad-cam", "cam_filter", "right"),
    Click("robustness", "robustness_cohort", "external:Lanzhou"),
    Click("centres", "recalibration_method", "logistic"),
    Click("sample-size", "size_with_threshold", True),
    Click("report", "report_pseudonymise", False),
)


def _set(app, key: str, value) -> None:
    for kind in ("radio", "checkbox", "selectbox", "segmented_control"):
        found = [w for w in getattr(app, kind) if w.key == key]
        if found:
            found[0].set_value(value)
            return
    raise SystemExit(f"no widget {key!r} on the page: the bench is out of step with the page")


def _timed(app) -> float:
    started = time.perf_counter()
    app.run()
    if app.exception:
        raise SystemExit(f"the page raised: {app.exception[0].message}")
    return time.perf_counter() - started


def measure(app, *, every_view: bool, clicks: tuple[Click, ...]) -> dict[str, float | list[float]]:
    """First render (cold caches), then per click: open its view (timed as a view-bar click) and
    make the click inside it (timed)."""
    first = _timed(app)
    bar, inside = [], []
    for click in clicks:
        if not every_view:
            current = app.segmented_control(key="tab").value
            if current != click.view:
                _set(app, "tab", click.view)
                bar.append(_timed(app))
        _set(app, click.key, click.value)
        inside.append(_timed(app))
    return {"first": first, "bar": bar, "inside": inside}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny and fast: the test suite's run")
    parser.add_argument("--workspace", type=Path, help="a workspace built by this script before (default: build one)")
    args = parser.parse_args()
    from streamlit.testing.v1 import AppTest

    from crc_core.workspace import WORKSPACE_ENV

    scratch = Path(tempfile.mkdtemp(prefix="evaluate-page-bench-"))
    try:
        started = time.perf_counter()
        if args.workspace:
            from crc_core.runs.store import RunStore

            root, run_id = args.workspace, RunStore(args.workspace).runs(status="done")[0].run_id
        else:
            root, run_id = build_workspace(scratch, smoke=args.smoke)
        print(f"workspace with a features run, Grad-CAM, the reader check and an external cohort: "
              f"{time.perf_counter() - started:.1f} s")
        os.environ[WORKSPACE_ENV] = str(root)
        clicks = CLICKS[::3] if args.smoke else CLICKS
        import streamlit as st

        AppTest.from_file(str(REPO_ROOT / "pages" / "evaluate.py"), default_timeout=600).run()  # imports, once for both
        figures = {}
        for every_view in (True, False):
            st.cache_data.clear()  # each page starts with cold caches
            app = (AppTest.from_string(EVERY_VIEW_PAGE, default_timeout=600) if every_view
                   else AppTest.from_file(str(REPO_ROOT / "pages" / "evaluate.py"), default_timeout=600))
            figures[every_view] = measure(app, every_view=every_view, clicks=clicks)
        old, new = figures[True], figures[False]
        old_click, new_click = statistics.median(old["inside"]), statistics.median(new["inside"])
        print(f"every view drawn (before issue 27): first render {old['first']:.2f} s, a click inside a view "
              f"{old_click:.2f} s (median of {len(old['inside'])})")
        print(f"the chosen view only: first render {new['first']:.2f} s, a click on the view bar "
              f"{statistics.median(new['bar']):.2f} s, a click inside a view {new_click:.2f} s (median of {len(new['inside'])})")
        for click, seconds in zip(clicks, new["inside"]):
            print(f"  {click.view}: {click.key} = {click.value!r}: {seconds:.2f} s")
        print(f"click inside a view: {new_click:.2f} s (goal ≤ 1 s); ratio: {old_click / new_click:.2f} "
              f"(every view / the chosen view); first render ratio {old['first'] / new['first']:.2f}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
