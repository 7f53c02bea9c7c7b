"""The Evaluate page as a meeting uses it (issue 27): only the chosen view is drawn, the view bar
reaches every view and lives in the URL, the evaluation is computed once per run and settings, the
first render adds no browser history entry, downloads built with other choices are marked out of
date, and the key columns of Table 2 and of DeLong's tests come first."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from crc_core.runs.store import RunStore
from tests.test_model_evaluation import stored_run
from tests.test_pages import open_view, run_page, wait_for_job

REPO_ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 60
EXTERNAL = "external:Lanzhou"


@pytest.fixture
def two_runs(tmp_path: Path) -> tuple[Path, str, str]:
    """A workspace with two finished runs of TSR on the same patients, with an external cohort."""
    root = tmp_path / "ws"
    root.mkdir()
    for name in ("clinical.csv", "pathology.csv"):
        (root / name).write_text("patient_id,x\nP1,1\nP2,2\n")
    store = RunStore(root)
    older = stored_run(store, seed=1, cohorts=("train", "validation", EXTERNAL), n=90)
    latest = stored_run(store, seed=2, cohorts=("train", "validation", EXTERNAL), n=90, backbone="resnet50")
    return root, older, latest


def counting(monkeypatch, module, name: str, calls: dict) -> None:
    original = getattr(module, name)

    def wrapper(*args, **kwargs):
        calls[name] = calls.get(name, 0) + 1
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)


def test_only_the_chosen_view_is_drawn(two_runs, use_workspace, monkeypatch):
    # Found in use: st.tabs ran all twelve views on every click (6-14 s per click in a tab).
    from crc_core.evaluate import external as ex
    from crc_core.evaluate import run_evaluation as me

    calls: dict[str, int] = {}
    for module, name in ((me, "roc_figure"), (me, "decision_figure"), (me, "calibration_figure"), (ex, "validation_size"),
                         (ex, "compare_centres")):
        counting(monkeypatch, module, name, calls)
    root, _, _ = two_runs
    use_workspace(root)
    app = run_page("evaluate")
    assert not app.exception, app.exception
    assert calls == {"roc_figure": 1}
    assert len(app.get("plotly_chart")) == 1 and not [d for d in app.dataframe if "Cohort" in d.value.columns]
    open_view(app, "calibration")
    assert calls == {"roc_figure": 1, "calibration_figure": 1}
    app.radio(key="calibration_cohort").set_value(EXTERNAL).run()  # a click inside the view: that view alone
    assert calls == {"roc_figure": 1, "calibration_figure": 2}
    assert not app.exception, app.exception


def test_every_view_is_on_a_bar_that_wraps_and_the_url_keeps_the_one_open(two_runs, use_workspace):
    # Found in use: twelve tabs overflowed the screen, half hidden at 1024 px.
    from pages._evaluation_views import VIEWS

    root, _, _ = two_runs
    use_workspace(root)
    app = run_page("evaluate")
    bar = app.segmented_control(key="tab")
    assert bar.options == [label for label, _ in VIEWS.values()] and len(bar.options) == 12
    assert bar.value == "roc" and bar.proto.wrap  # a second row on a narrow screen, never a hidden half
    reopened = AppTest.from_file(str(REPO_ROOT / "pages" / "evaluate.py"), default_timeout=TIMEOUT_S)
    reopened.query_params["tab"] = VIEWS["calibration"][0]  # a reload, a link or Back
    reopened.run()
    assert reopened.segmented_control(key="tab").value == "calibration"
    assert any(c.value.startswith("Calibration-in-the-large") for c in reopened.caption)


def test_a_choice_inside_a_view_survives_a_visit_to_another_view(two_runs, use_workspace):
    root, _, _ = two_runs
    use_workspace(root)
    app = open_view(run_page("evaluate"), "calibration")
    app.radio(key="calibration_cohort").set_value(EXTERNAL).run()
    open_view(app, "roc")
    open_view(app, "calibration")
    assert app.radio(key="calibration_cohort").value == EXTERNAL


def test_the_evaluation_is_computed_once_per_run_and_settings(two_runs, use_workspace, monkeypatch):
    # Another run training beside it rewrites the run store every few seconds: this run's evaluation
    # stays cached; a new prediction of this run is read at once.
    import numpy as np
    import pandas as pd

    from crc_core.evaluate import run_evaluation as me

    st.cache_data.clear()
    calls: dict[str, int] = {}
    counting(monkeypatch, me, "evaluate_run", calls)
    root, _, latest = two_runs
    use_workspace(root)
    app = run_page("evaluate")
    open_view(app, "calibration").radio(key="calibration_cohort").set_value(EXTERNAL).run()
    store = RunStore(root)
    training = store.create_run(target="til", backbone="resnet34", mode="finetune", config={})
    store.heartbeat(training)
    app.run()
    assert calls == {"evaluate_run": 1}
    app.radio(key="evaluate_rule").set_value("per_cohort").run()
    assert calls == {"evaluate_run": 2}  # other settings: evaluated once more
    y = np.random.default_rng(5).integers(0, 2, 40)
    store.set_predictions(latest, "external:Leiden", pd.DataFrame({"patient_id": [f"L{i}" for i in range(40)], "y_true": y,
                                                                   "prob": np.clip(0.3 + 0.4 * y, 0, 1)}))
    app.run()
    assert calls == {"evaluate_run": 3} and "external: Leiden" in app.radio(key="calibration_cohort").options


def test_the_first_render_writes_nothing_into_the_url_and_a_choice_does(two_runs, use_workspace):
    # Found in use: Back from Evaluate needed two presses — the first render wrote ?run= into the URL,
    # which adds a browser history entry.
    root, older, latest = two_runs
    use_workspace(root)
    app = AppTest.from_file(str(REPO_ROOT / "app.py"), default_timeout=TIMEOUT_S)
    app.query_params["workspace"] = str(root)
    app.switch_page("pages/evaluate.py").run()
    assert not app.exception, app.exception
    assert app.selectbox(key="evaluate_run").value == latest
    assert app.query_params == {"workspace": str(root)}
    app.selectbox(key="evaluate_run").set_value(older).run()
    assert app.query_params["run"] == older  # the user's choice is kept for a reload or a link
    app.query_params["run"] = latest  # Back to the entry before that choice
    app.run()
    assert app.selectbox(key="evaluate_run").value == latest


def test_the_workspace_in_the_first_url_is_an_absolute_path(tmp_path, sample_workspace, use_workspace, monkeypatch):
    # Found in use: the first URL read ?workspace=workspace, a path that means nothing after a restart
    # from another folder.
    import shutil

    monkeypatch.chdir(tmp_path)
    shutil.copytree(sample_workspace, tmp_path / "mine", ignore=shutil.ignore_patterns("images", "masks"))
    use_workspace(Path("mine"))
    app = AppTest.from_file(str(REPO_ROOT / "app.py"), default_timeout=TIMEOUT_S).run()
    assert not app.exception, app.exception
    assert app.query_params["workspace"] == str(tmp_path / "mine")
    assert app.sidebar.text_input[0].value == str(tmp_path / "mine")
    typed = AppTest.from_file(str(REPO_ROOT / "app.py"), default_timeout=TIMEOUT_S)
    typed.query_params["workspace"] = "mine/../mine"
    typed.run()
    assert typed.query_params["workspace"] == os.path.join(str(tmp_path), "mine")


def test_table_two_and_delong_show_their_key_columns_first(two_runs, use_workspace):
    # Found in use: Table 2's Cohort column and Compare's DeLong p were off-screen at 1024 px.
    import json

    root, _, _ = two_runs
    use_workspace(root)
    app = open_view(run_page("evaluate"), "table-2")
    table = [d for d in app.dataframe if "Cohort" in d.value.columns][0]
    assert list(table.value.columns[:3]) == ["Cohort", "AUC", "95% CI"] and table.value.columns[-1] == "Model"
    assert json.loads(table.proto.columns)["Cohort"]["pinned"] is True  # in view when the table scrolls
    open_view(app, "compare")
    delong = [d for d in app.dataframe if "Second model" in d.value.columns][0]
    # The difference with its CI, then p Holm-adjusted across the pairs (issue 26: what a comparison
    # rules out first; one family of tests), all in view.
    assert list(delong.value.columns[:4]) == ["First model", "Second model", "AUC difference (95% CI)", "Holm-adjusted p"]
    widths = json.loads(delong.proto.columns)
    assert widths["First model"]["width"] == widths["Second model"]["width"] == "medium"


def test_a_report_built_with_other_choices_is_marked_out_of_date(writable_workspace, use_workspace):
    # Found in use: after the threshold rule changed, the report built with the old one was still
    # offered under a caption saying it used the choices above.
    import shutil

    from tests.test_combined_model import make_dl_run

    workspace, _, _ = make_dl_run(writable_workspace)
    use_workspace(workspace)
    app = open_view(run_page("evaluate"), "report")
    app.button(key="build_report").click().run()
    job = wait_for_job(workspace, "report", 180)
    assert job.state == "done", job.message
    app.run()

    def offered() -> str:
        return [b.label for b in app.get("download_button") if "report" in b.label][0]

    assert offered().startswith("Download the report (") and not app.warning
    app.radio(key="evaluate_rule").set_value("per_cohort").run()
    assert offered().startswith("Download the out-of-date report (")
    said = [w.value for w in app.warning if w.value.startswith("Out of date")]
    assert len(said) == 1 and "threshold: Youden on training out-of-fold (now each cohort's own)" in said[0]
    assert app.button(key="build_report").label == "Rebuild the report with the choices above"
    app.radio(key="evaluate_rule").set_value("training").run()
    app.multiselect(key="evaluate_cohorts").set_value(["validation"]).run()
    said = [w.value for w in app.warning if w.value.startswith("Out of date")]
    assert len(said) == 1 and "cohorts: training, validation (now validation)" in said[0]
    app.button(key="build_report").click().run()  # Rebuild: with the choices above
    job = wait_for_job(workspace, "report", 180)
    assert job.state == "done", job.message
    app.run()
    assert offered().startswith("Download the report (") and not app.warning
    shutil.rmtree(workspace / "jobs")  # a report whose choices are not known (built in a terminal)
    app.run()
    assert offered().startswith("Download the out-of-date report (")
    assert any("which ones is not known" in w.value for w in app.warning)
