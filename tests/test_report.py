"""The lab-meeting report and the figure exports: the report opened in headless Chromium with the
network off shows every section and asks no host for anything; pseudonyms replace every patient ID;
no path of this machine appears; PNG and SVG at publication size."""

from __future__ import annotations

import os
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crc_core import report
from crc_core.cli import main

torch = pytest.importorskip("torch")

SECTION_TITLES = [title for _, title in report.SECTIONS]


@pytest.fixture(scope="module")
def reported_run(small_training_workspace, tmp_path_factory):
    """A features run of the small workspace with Grad-CAM maps of its validation cohort, and a
    combined model on top of it."""
    from crc_core import cam
    from crc_core.combined_model import CombinedConfig, fit_combined
    from crc_core.training import TrainConfig, train_run

    root = tmp_path_factory.mktemp("report") / "workspace"
    shutil.copytree(small_training_workspace, root, ignore=shutil.ignore_patterns("images", "masks", "runs", "features", "jobs"))
    run_id = train_run(root, TrainConfig(weights="random", backbones=("resnet34",), device="cpu"))
    cam.cohort_maps(root, run_id, "validation", layer="backbone.layer2")
    combined = fit_combined(root, CombinedConfig(run_id=run_id, variables=("age",)))
    return root, run_id, combined.run_id


def chromium() -> str:
    found = os.environ.get("CRC_TIME_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("Debian's chromium is missing: `make test` installs it (apt-get install chromium).")
    return found


def patient_ids(root: Path) -> list[str]:
    return pd.read_csv(root / "clinical.csv")["patient_id"].astype(str).tolist()


def test_the_report_opens_offline_with_every_section_and_pseudonyms(reported_run, tmp_path, capsys):
    from playwright.sync_api import sync_playwright

    root, run_id, _ = reported_run
    out = tmp_path / "lab meeting" / "report.html"
    assert main(["--workspace", str(root), "report", "--run", run_id, "--out", str(out), "--pseudonymise"]) == 0
    assert "opens offline" in capsys.readouterr().out
    document = out.read_text(encoding="utf-8")
    body = document.split("</head>", 1)[1]
    assert not any(re.search(rf"(?<![\w-]){re.escape(p)}(?![\w-])", body) for p in patient_ids(root))
    assert str(root) not in document and str(tmp_path) not in document and "/tmp/" not in body
    assert "Patient " in body and "random initialisation" in body

    requests, problems = [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(),
                                             args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        context = browser.new_context(offline=True, viewport={"width": 1300, "height": 900})
        page = context.new_page()
        page.on("request", lambda request: requests.append(request.url))
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
        page.goto(out.as_uri())
        page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot .main-svg').length >= 9", timeout=30_000)
        headings = page.locator("h2").all_inner_texts()
        rendered = page.locator(".js-plotly-plot").count()
        gradcam = page.locator("#gradcam .js-plotly-plot").count()
        text = page.locator("body").inner_text()
        browser.close()
    assert headings == SECTION_TITLES
    # ROC, violin, and the decision curve, clinical impact and calibration of both cohorts; Grad-CAM
    # drawn as on the page (the same Turbo figure), not as pictures of another palette.
    assert rendered == 9 and gradcam == 1
    assert [url for url in requests if not url.startswith("file:")] == [] and problems == []
    assert "with the logistic regression on the frozen features drawn at random" in text
    assert "Fine-tuning" not in text and "L2-penalised logistic regression" in text  # the methods of this run's mode


def test_a_combined_run_reports_its_odds_ratios_and_nomogram(reported_run):
    root, _, combined_id = reported_run
    document = report.build_report(root, combined_id)
    assert "odds ratios with Wald 95% CIs" in document and "Nomogram of the combined model" in document
    assert "DL score (per SD)" in document and "age" in document


def test_figures_as_png_and_svg_at_publication_size(reported_run, tmp_path):
    from PIL import Image

    root, run_id, combined_id = reported_run
    out = tmp_path / "figures.zip"
    assert main(["--workspace", str(root), "figures", "--run", run_id, "--out", str(out), "--pseudonymise"]) == 0
    with zipfile.ZipFile(out) as archive:
        names = set(archive.namelist())
        stems = {"roc", "violin", "gradcam"} | {f"{kind}-{cohort}" for kind in ("decision_curve", "clinical_impact", "calibration")
                                               for cohort in ("train", "validation")}
        assert names == {f"{s}.{fmt}" for s in stems for fmt in ("png", "svg")}
        archive.extractall(tmp_path / "unzipped")
        svgs = "".join(archive.read(name).decode() for name in names if name.endswith(".svg"))
    with Image.open(tmp_path / "unzipped" / "roc.png") as picture:
        assert picture.size == (2 * report.FIGURE_WIDTH, 2 * report.FIGURE_HEIGHT)
    svg = (tmp_path / "unzipped" / "gradcam.svg").read_text()
    assert svg.startswith("<svg") and "Patient " in svg
    assert not any(re.search(rf"(?<![\w-]){re.escape(p)}(?![\w-])", svgs) for p in patient_ids(root))

    said = []
    folder = report.write_figures(root, combined_id, tmp_path / "combined", progress=lambda d, t, m="": said.append(m))
    assert {p.name for p in folder} >= {"nomogram.png", "nomogram.svg", "roc.png", "clinical_impact-validation.svg"}
    assert said[0] == "evaluating the run" and said[1] == "ROC as PNG: 1 of 18"
    assert not list((tmp_path / "combined").glob(".export-*"))  # the scratch folder is gone


def test_pseudonyms_replace_whole_ids_only():
    names = {"CRC1": "Patient 001", "CRC10": "Patient 002", "P-2": "Patient 003"}
    text = "CRC10 and CRC1, not CRC100 nor XCRC1; P-2 but not P-20"
    assert report.pseudonymised_text(text, names) == "Patient 002 and Patient 001, not CRC100 nor XCRC1; Patient 003 but not P-20"


def test_pseudonyms_reveal_nothing_of_the_ids(sample_workspace):
    """Numbered in row order, Patient 236 was CRC236. Drawn at random, no pseudonym carries its
    patient's number, the order says nothing, and without the workspace's key the draw cannot be
    repeated."""
    ids = patient_ids(sample_workspace)
    names = report.pseudonyms(ids, seed=20261130)
    numbers = {p: int(names[p].split()[1]) for p in ids}
    assert sorted(numbers.values()) == list(range(1, len(ids) + 1)) and len(set(names.values())) == len(ids)
    assert all(numbers[p] != int(p[3:]) for p in ids)
    order = np.array([numbers[p] for p in ids])
    assert abs(np.corrcoef(order, np.arange(len(ids)))[0, 1]) < 0.2
    assert report.pseudonyms(ids, seed=20261130) == names and report.pseudonyms(ids, seed=1) != names
    # For every ID that carries a number, however many patients: never that number.
    for n in (2, 3, 10):
        few = [f"P{i}" for i in range(1, n + 1)]
        for seed in range(50):
            assert all(report.pseudonyms(few, seed=seed)[p] != f"Patient {int(p[1:]):03d}" for p in few)


def test_a_report_and_its_figures_name_a_patient_alike_and_keep_the_key_at_home(reported_run):
    root, run_id, _ = reported_run
    from crc_core.model_evaluation import evaluate_run
    from crc_core.runs import RunStore

    result = evaluate_run(RunStore(root), run_id)
    first = report.patient_names(root, result, True)
    assert report.patient_names(root, result, True) == first  # the report and the figures zip agree
    key = (root / "exports" / ".pseudonym-key").read_text()
    assert len(key) >= 32 and key not in report.build_report(root, report.ReportConfig(run_id=run_id, pseudonymise=True))


def test_the_report_shows_what_the_page_chose(reported_run):
    root, run_id, _ = reported_run
    chosen = report.ReportConfig(run_id=run_id, threshold_rule="per_cohort", ci_method="bootstrap", cohorts=("validation",))
    document = report.build_report(root, chosen)
    assert "own threshold: optimistic" in document and "stratified bootstrap (2000)" in document
    assert "Calibration, training cohort" not in document and "Calibration, validation cohort" in document
    default = report.build_report(root, run_id)
    assert "own threshold: optimistic" not in document.split("Table 2")[0] and "DeLong" in default


def test_pseudonymising_a_figure_leaves_its_numbers_alone():
    import plotly.graph_objects as go

    x = np.linspace(0, 1, 50)
    figure = go.Figure(go.Scatter(x=x, y=x ** 2, text=["CRC1"] * 50, name="CRC1's curve"))
    figure.update_layout(title="CRC1")
    renamed = report.pseudonymised_figure(figure, {"CRC1": "Patient 001"})
    assert renamed.layout.title.text == "Patient 001" and renamed.data[0].name == "Patient 001's curve"
    assert list(renamed.data[0].text) == ["Patient 001"] * 50
    # plotly keeps numeric arrays base64-encoded ("bdata"); they come through byte for byte.
    assert renamed.to_dict()["data"][0]["y"] == figure.to_dict()["data"][0]["y"]
    assert "bdata" in figure.to_dict()["data"][0]["y"]
    assert figure.layout.title.text == "CRC1"  # the original is untouched


def test_no_path_of_this_machine_survives():
    config = {"crop_set": "/home/ana/study/crops/abc123", "weights": {"path": r"C:\Users\ana\models\densenet121.pth"},
              "notes": ["read /data/ct/CRC001.nii.gz at 2 mm", "plain text / with a slash"], "size": 224}
    cleaned = report.without_paths(config)
    assert cleaned == {"crop_set": "abc123", "weights": {"path": "densenet121.pth"},
                       "notes": ["read CRC001.nii.gz at 2 mm", "plain text / with a slash"], "size": 224}


def test_outputs_that_cannot_be_written_are_refused_before_any_work(reported_run, tmp_path, capsys):
    root, run_id, _ = reported_run
    (tmp_path / "a folder").mkdir()
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    cases = [("report", tmp_path / "a folder", r"is a folder; name a file inside it"),
             ("report", tmp_path / "notes.txt", r"should end in \.html"),
             ("figures", tmp_path / "a folder" / "x.zip" / "deeper.zip", None)]
    for step, out, words in cases[:2]:
        assert main(["--workspace", str(root), step, "--run", run_id, "--out", str(out)]) == 2
        assert re.search(words, capsys.readouterr().err)
    if os.geteuid() != 0:  # root writes anywhere; the check is then the folder test below
        assert main(["--workspace", str(root), "figures", "--run", run_id, "--out", str(locked / "f.zip")]) == 2
        assert "cannot be written" in capsys.readouterr().err or "Cannot write" in capsys.readouterr().err
    (tmp_path / "a file").write_text("x")
    assert main(["--workspace", str(root), "figures", "--run", run_id, "--out", str(tmp_path / "a file")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert main(["--workspace", str(tmp_path / "nowhere"), "runs"]) == 2
    assert "the workspace folder" in capsys.readouterr().err and not (tmp_path / "nowhere").exists()


def test_software_versions_name_what_computed_the_numbers():
    versions = report.software_versions()
    assert {"CRC-TIME", "Python", "numpy", "scipy", "statsmodels", "torch"} <= set(versions)


def test_the_sample_size_section_gives_the_criteria_or_says_why_not(reported_run):
    """The report's sample-size section is validation_size's answer (checked against pmvalsampsize in
    test_external) or, for a model no better than chance, validation_size's refusal in words."""
    import html as html_module

    from crc_core import external as ex
    from crc_core.errors import CrcInputError
    from crc_core.model_evaluation import evaluate_run
    from crc_core.runs import RunStore

    root, run_id, _ = reported_run
    document = report.build_report(root, run_id)
    assert "Sample size for external validation" in document
    try:
        table = ex.validation_size(evaluate_run(RunStore(root), run_id))
    except CrcInputError as refusal:
        assert html_module.escape(str(refusal)) in document
    else:
        assert f">{int(table['n'].max())}<" in document
