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
    cam.cohort_maps(root, run_id, "validation", layer="backbone.layer2", sanity_patients=3)
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
    assert "Patient 0" in body and "random initialisation" in body

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
        page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot .main-svg').length >= 4", timeout=30_000)
        headings = page.locator("h2").all_inner_texts()
        rendered = page.locator(".js-plotly-plot").count()
        pictures = page.locator("#gradcam img").evaluate_all("images => images.map(i => i.naturalWidth)")
        text = page.locator("body").inner_text()
        browser.close()
    assert headings == SECTION_TITLES
    assert rendered == 4 and pictures and all(width > 0 for width in pictures)
    assert [url for url in requests if not url.startswith("file:")] == [] and problems == []
    assert "median rank correlation with the same network re-initialised" in text


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
        stems = {"roc", "violin", "decision_curve", "calibration", "gradcam"}
        assert names == {f"{s}.{fmt}" for s in stems for fmt in ("png", "svg")}
        archive.extractall(tmp_path / "unzipped")
    with Image.open(tmp_path / "unzipped" / "roc.png") as picture:
        assert picture.size == (2 * report.FIGURE_WIDTH, 2 * report.FIGURE_HEIGHT)
    svg = (tmp_path / "unzipped" / "gradcam.svg").read_text()
    assert svg.startswith("<svg") and "Patient 0" in svg
    assert not any(re.search(rf">{re.escape(p)}\b", svg) for p in patient_ids(root))

    folder = report.write_figures(root, combined_id, tmp_path / "combined")
    assert {p.name for p in folder} >= {"nomogram.png", "nomogram.svg", "roc.png"}
    assert not list((tmp_path / "combined").glob(".export-*"))  # the scratch folder is gone


def test_pseudonyms_replace_whole_ids_only():
    names = report.pseudonyms(["CRC1", "CRC10", "CRC1", "P-2"])
    assert names == {"CRC1": "Patient 001", "CRC10": "Patient 002", "P-2": "Patient 003"}
    text = "CRC10 and CRC1, not CRC100 nor XCRC1; P-2 but not P-20"
    assert report.pseudonymised_text(text, names) == "Patient 002 and Patient 001, not CRC100 nor XCRC1; Patient 003 but not P-20"


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


def test_software_versions_name_what_computed_the_numbers():
    versions = report.software_versions()
    assert {"CRC-TIME", "Python", "numpy", "scipy", "statsmodels", "torch"} <= set(versions)
