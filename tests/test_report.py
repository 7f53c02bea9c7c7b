"""The lab-meeting report and the figure exports: the report opened in headless Chromium with the
network off shows every section and asks no host for anything; pseudonyms replace every patient ID;
no path of this machine appears; PNG and SVG at publication size."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crc_core.reporting import report
from crc_core.cli import main

torch = pytest.importorskip("torch")

SECTION_TITLES = [title for _, title in report.SECTIONS]


@pytest.fixture(scope="module")
def reported_run(small_training_workspace, tmp_path_factory):
    """A features run of the small workspace with Grad-CAM maps of its validation cohort, and a
    combined model on top of it."""
    from crc_core.evaluate import cam
    from crc_core.evaluate.combined_model import CombinedConfig, fit_combined
    from crc_core.training.grid import TrainConfig, train_run

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
        models = page.locator("#models .js-plotly-plot").count()
        text = page.locator("body").inner_text()
        browser.close()
    assert headings == SECTION_TITLES
    # ROC, violin, and the decision curve, clinical impact and calibration of both cohorts; Grad-CAM
    # drawn as on the page (the same figure and colour map), not as pictures of another palette.
    # With the Models section's Compare-runs figures (the combined model is the target's second run).
    assert rendered == 11 and gradcam == 1 and models == 2
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
        # With the combined model beside it, the run's target has two finished runs: the Compare-runs
        # figures come along (the penalty path of the fast mode, and the AUC of each run's folds).
        stems = {"roc", "violin", "gradcam", "compare_aucs", "compare_penalty"} | {
            f"{kind}-{cohort}" for kind in ("decision_curve", "clinical_impact", "calibration") for cohort in ("train", "validation")}
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
    assert {p.name for p in folder} >= {"nomogram.png", "nomogram.svg", "roc.png", "clinical_impact-validation.svg", "compare_aucs.svg"}
    assert said[0] == "evaluating the run" and said[1] == "ROC as PNG: 1 of 22"
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
    from crc_core.evaluate.run_evaluation import evaluate_run
    from crc_core.runs.store import RunStore

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
    # A Grad-CAM panel names the model's probability in words: "p = 0.96" read as a p value.
    assert "predicted probability of high 0." in default and not re.search(r"\bp = \d", default)


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

    from crc_core.evaluate import external as ex
    from crc_core.errors import CrcInputError
    from crc_core.evaluate.run_evaluation import evaluate_run
    from crc_core.runs.store import RunStore

    root, run_id, _ = reported_run
    document = report.build_report(root, run_id)
    assert "Sample size for external validation" in document
    try:
        table = ex.validation_size(evaluate_run(RunStore(root), run_id))
    except CrcInputError as refusal:
        assert html_module.escape(str(refusal)) in document
    else:
        assert f">{int(table['n'].max())}<" in document


# ---------------------------------------------------------------------------------------------
# The order attack (issue 21): whoever holds the list of IDs must learn nothing from the order in
# which a pseudonymised report or figures zip lists its patients.

#: A fixed key (the workspace's own is random): the pseudonyms, so the attack's outcome, are the
#: same on every machine.
ATTACK_KEY = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"


@pytest.fixture(scope="module")
def attacked_run(small_training_workspace, tmp_path_factory):
    """A features run with Grad-CAM maps and a kept reader check (its Bland-Altman plot names every
    validation patient in its hover text), pseudonymised from a known key."""
    from crc_core.evaluate import cam
    from crc_core.evaluate import robustness as rb
    from crc_core.training.grid import TrainConfig, train_run

    root = tmp_path_factory.mktemp("attack") / "workspace"
    shutil.copytree(small_training_workspace, root, ignore=shutil.ignore_patterns("images", "masks", "runs", "features", "jobs"))
    for folder in ("images", "masks"):
        (root / folder).symlink_to(small_training_workspace / folder, target_is_directory=True)
    run_id = train_run(root, TrainConfig(weights="random", backbones=("resnet34",), device="cpu"))
    cam.cohort_maps(root, run_id, "validation", layer="backbone.layer2")
    rb.keep_robustness(root, rb.robustness(root, run_id))
    (root / "exports").mkdir(exist_ok=True)
    (root / "exports" / ".pseudonym-key").write_text(ATTACK_KEY)
    return root, run_id


def _true_names(root: Path, run_id: str) -> dict[str, str]:
    """Pseudonym → patient ID: what the attacker wants."""
    from crc_core.evaluate.run_evaluation import evaluate_run
    from crc_core.runs.store import RunStore

    names = report.patient_names(root, evaluate_run(RunStore(root), run_id), True)
    return {alias: real for real, alias in names.items()}


def _id_orders(root: Path, run_id: str) -> dict[str, list[str]]:
    """Every order of patient IDs an attacker may hold: sorted and as the cohort's file lists them,
    the whole cohort's and each split's."""
    from crc_core.runs.store import RunStore

    clinical = pd.read_csv(root / "clinical.csv", dtype=str)
    predictions = RunStore(root).predictions(run_id)
    orders = {"file": clinical["patient_id"].tolist(), "sorted": sorted(clinical["patient_id"])}
    for cohort, rows in predictions.groupby("cohort"):
        ids = list(dict.fromkeys(rows["patient_id"].astype(str)))
        orders[f"{cohort}, as stored"] = ids
        orders[f"{cohort}, sorted"] = sorted(ids)
        orders[f"{cohort}, file order"] = [p for p in orders["file"] if p in set(ids)]
    return orders


def _plotly_figures(document: str) -> list[tuple[list, dict]]:
    """(data, layout) of every ``Plotly.newPlot`` call in an HTML page, as the browser receives them."""
    decoder, comma = json.JSONDecoder(), re.compile(r"\s*,\s*")
    found = []
    for call in re.finditer(r"Plotly\.newPlot\(\s*", document):
        _, at = decoder.raw_decode(document, call.end())
        data, at = decoder.raw_decode(document, comma.match(document, at).end())
        layout, _ = decoder.raw_decode(document, comma.match(document, at).end())
        found.append((data, layout))
    return found


def _points(value) -> list | None:
    """A per-point array of a trace as the browser reads it (plotly's base64 arrays decoded)."""
    import base64

    if isinstance(value, dict) and "bdata" in value:
        array = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        if value.get("shape"):
            array = array.reshape([int(n) for n in value["shape"].split(",")])
        return array.tolist()
    return list(value) if isinstance(value, list) else None


def _pseudonyms_in(text: str, aliases: re.Pattern) -> list[str]:
    return aliases.findall(str(text))


def _pseudonym_sequences(document: str, aliases: re.Pattern) -> dict[str, list[str]]:
    """Every list of pseudonyms in the order a reader meets them: each trace's hover text and custom
    data, each figure's annotations, each HTML table and each paragraph."""
    sequences = {}
    for f, (data, layout) in enumerate(_plotly_figures(document)):
        for t, trace in enumerate(data):
            for key in ("text", "hovertext", "customdata"):
                values = _points(trace.get(key))
                if values:
                    sequences[f"figure {f}, trace {t} {key}"] = [a for v in values for a in _pseudonyms_in(v, aliases)]
        sequences[f"figure {f}, annotations"] = [a for note in layout.get("annotations", [])
                                                 for a in _pseudonyms_in(note.get("text", ""), aliases)]
    page = re.sub(r"<script.*?</script>", "", document.split("</head>", 1)[1], flags=re.S)
    for kind in ("table", "p", "dd", "li"):
        for i, block in enumerate(re.findall(rf"<{kind}\b.*?</{kind}>", page, flags=re.S)):
            sequences[f"{kind} {i}"] = _pseudonyms_in(html_text(block), aliases)
    return {where: seq for where, seq in sequences.items() if len(seq) >= 2}


def html_text(block: str) -> str:
    import html as html_module

    return html_module.unescape(re.sub(r"<[^>]+>", " ", block))


def _positional_attack(sequence: list[str], truth: dict[str, str], orders: dict[str, list[str]]) -> tuple[int, int, float]:
    """The attacker's best: pair the i-th pseudonym with the i-th ID of an order of the same length
    (patients recovered), and the rank correlation of the sequence with each order of IDs (1: the
    sequence is in that order, which gives every pseudonym of a full list back); with the length."""
    from scipy.stats import spearmanr

    recovered, correlation = 0, 0.0
    real = [truth[a] for a in sequence]
    for ids in orders.values():
        if len(ids) == len(sequence):
            recovered = max(recovered, sum(guess == actual for guess, actual in zip(ids, real)))
        rank = {p: i for i, p in enumerate(ids)}
        if len(sequence) >= 4 and all(p in rank for p in real) and len(set(real)) == len(real):
            rho = spearmanr(np.arange(len(real)), [rank[p] for p in real])[0]
            correlation = max(correlation, abs(float(rho)))
    return len(sequence), recovered, correlation


def _attack_document(document: str, truth: dict[str, str], orders: dict[str, list[str]]) -> dict[str, tuple[int, int, float]]:
    aliases = re.compile("|".join(re.escape(a) for a in sorted(truth, key=len, reverse=True)))
    return {where: _positional_attack(seq, truth, orders) for where, seq in _pseudonym_sequences(document, aliases).items()}


def assert_chance(where: str, n: int, recovered: int, correlation: float) -> None:
    """A random order pairs one patient right on average (the IDs' order paired every one) and
    correlates with no order of the IDs; a short list (the six Grad-CAM panels) is at least never
    in the IDs' order."""
    assert recovered <= 3, (where, n, recovered)
    assert correlation < (0.8 if n >= 8 else 0.999), (where, n, correlation)


def _point_traces(data: list) -> list[dict]:
    """The traces whose points may be patients (markers, boxes, violins, histograms)."""
    kept = []
    for trace in data:
        kind = trace.get("type", "scatter")
        if kind in ("scatter", "scattergl") and ("lines" in trace.get("mode", "lines") or trace.get("fill") not in (None, "none")):
            continue
        if kind in ("scatter", "scattergl", "box", "violin", "histogram"):
            kept.append(trace)
    return kept


def test_the_order_of_a_pseudonymised_report_gives_no_patient_back(attacked_run):
    """Found by an audit: the Bland-Altman hover text listed the validation patients in the order of
    their IDs, so the sorted IDs gave back 215 of 215 pseudonyms. Every list in the report — trace
    points, hover text, tables, text — is in pseudonym or value order: the positional attack
    recovers no more than chance, and no list follows the IDs' order."""
    root, run_id = attacked_run
    document = report.build_report(root, report.ReportConfig(run_id=run_id, pseudonymise=True))
    truth, orders = _true_names(root, run_id), _id_orders(root, run_id)
    figures = _plotly_figures(document)
    bland_altman = [trace for data, layout in figures for trace in data
                    if "Bland-Altman" in str(layout.get("title", {}).get("text", "")) and trace.get("text")]
    assert len(bland_altman) == 1 and len(_points(bland_altman[0]["text"])) >= 10  # the attack has its target

    attacks = _attack_document(document, truth, orders)
    assert any("figure" in where for where in attacks)
    for where, attack in attacks.items():
        assert_chance(where, *attack)

    aliases = re.compile("|".join(map(re.escape, truth)))
    for data, _ in figures:
        for trace in _point_traces(data):
            named = next((_points(trace.get(k)) for k in ("text", "hovertext", "customdata")
                          if _points(trace.get(k)) and any(aliases.search(str(v)) for v in _points(trace[k]))), None)
            if named is not None:
                shown = [aliases.search(str(v)).group(0) for v in named]
                assert shown == sorted(shown), "points named by pseudonym come in pseudonym order"
                continue
            axis = "x" if trace.get("type") == "histogram" or trace.get("orientation") == "h" else "y"
            values, groups = _points(trace.get(axis)), _points(trace.get("y" if axis == "x" else "x"))
            if not values or not all(isinstance(v, (int, float)) for v in values):
                continue
            groups = groups if groups and not all(isinstance(g, (int, float)) for g in groups) else [""] * len(values)
            for group in dict.fromkeys(groups):
                within = [v for v, g in zip(values, groups) if g == group]
                assert within == sorted(within), "unnamed patient points come by value, never in the IDs' order"


def test_lists_and_tables_of_patients_come_in_pseudonym_order():
    import plotly.graph_objects as go

    names = {"CRC001": "Patient 003", "CRC002": "Patient 001", "CRC003": "Patient 002"}
    assert report.pseudonymised_text("left out of reader 2: CRC001 (no mask); CRC002 (eroded away)", names) == \
        "left out of reader 2: Patient 001 (eroded away); Patient 003 (no mask)"
    assert report.pseudonymised_text("e.g. CRC001, CRC002, CRC003.", names) == "e.g. Patient 001, Patient 002, Patient 003."
    table = report.pseudonymised_frame(pd.DataFrame({"patient": ["CRC001", "CRC002", "CRC003"], "prob": [0.9, 0.1, 0.5]}), names)
    assert table["patient"].tolist() == ["Patient 001", "Patient 002", "Patient 003"] and table["prob"].tolist() == [0.1, 0.5, 0.9]
    figure = go.Figure(go.Scatter(x=[1.0, 2.0, 3.0], y=[0.3, 0.1, 0.2], text=["CRC001", "CRC002", "CRC003"], mode="markers",
                                  marker={"size": [7, 8, 9]}))
    figure.add_violin(x=["validation"] * 3 + ["training"] * 2, y=[0.9, 0.1, 0.5, 0.3, 0.2])
    figure.add_scatter(x=[0.0, 0.5, 1.0], y=[0.0, 0.9, 1.0], mode="lines")  # a curve: its order draws it
    renamed = report.pseudonymised_figure(figure, names)
    points, violin, curve = renamed.data
    assert list(points.text) == ["Patient 001", "Patient 002", "Patient 003"]
    assert list(points.x) == [2.0, 3.0, 1.0] and list(points.marker.size) == [8, 9, 7]  # each point keeps its values
    assert list(violin.x) == ["validation"] * 3 + ["training"] * 2 and list(violin.y) == [0.1, 0.5, 0.9, 0.2, 0.3]
    assert list(curve.y) == [0.0, 0.9, 1.0]


def _svg_points(svg: str) -> list[list[tuple[float, float]]]:
    """Each scatter trace's marker positions (px) in the order the SVG draws them."""
    traces = re.split(r'<g class="trace scatter', svg)[1:]
    return [[(float(x), float(y)) for x, y in re.findall(r'<path class="point" transform="translate\(([-\d.]+),([-\d.]+)\)', part)]
            for part in traces]


def test_the_order_of_a_pseudonymised_figures_zip_gives_no_patient_back(attacked_run, tmp_path):
    """The figures zip draws the same points as the report. The attacker pairs the i-th point of the
    Bland-Altman SVG with the i-th validation ID, and each point with the pseudonym whose hover
    values in the report have the same rank: today that named every validation patient; in
    pseudonym order, chance. Text in the SVGs, CSVs and member names are attacked as in the report."""
    root, run_id = attacked_run
    truth, orders = _true_names(root, run_id), _id_orders(root, run_id)
    aliases = re.compile("|".join(re.escape(a) for a in sorted(truth, key=len, reverse=True)))
    config = report.ReportConfig(run_id=run_id, pseudonymise=True)
    out = tmp_path / "figures.zip"
    report.write_figures(root, config, out)
    with zipfile.ZipFile(out) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    ids = re.compile("|".join(rf"(?<![\w-]){re.escape(p)}(?![\w-])" for p in truth.values()))
    assert not any(aliases.search(name) or ids.search(name) for name in members)
    for name, content in members.items():
        if name.endswith(".csv"):
            table = pd.read_csv(io.BytesIO(content), dtype=str)
            for column in table.columns:
                shown = [a for v in table[column].dropna() for a in aliases.findall(v)]
                assert shown == sorted(shown), (name, column)
        if name.endswith(".svg"):
            words = re.findall(r"<text\b[^>]*>(.*?)</text>", content.decode(), flags=re.S)
            sequence = [a for w in words for a in aliases.findall(html_text(w))]
            if len(sequence) >= 2:
                assert_chance(name, *_positional_attack(sequence, truth, orders))

    document = report.build_report(root, config)
    hover = next(trace for data, layout in _plotly_figures(document) for trace in data
                 if "Bland-Altman" in str(layout.get("title", {}).get("text", "")) and trace.get("text"))
    means = dict(zip(_points(hover["text"]), _points(hover["x"])))
    drawn = _svg_points(members["robustness_bland_altman-validation.svg"].decode())[0]
    assert len(drawn) == len(means) >= 10
    by_rank = [alias for alias, _ in sorted(means.items(), key=lambda item: item[1])]
    pixel_rank = np.argsort(np.argsort([x for x, _ in drawn]))
    guessed = [by_rank[r] for r in pixel_rank]  # the pseudonym of each drawn point, in drawing order
    assert sorted(truth[a] for a in guessed) == sorted(orders["validation, sorted"])  # the attack reads the points right
    assert_chance("Bland-Altman SVG", *_positional_attack(guessed, truth, orders))


def test_tripod_items_say_what_the_workspace_knows_and_never_point_to_themselves(tmp_path):
    """Found in review: item 23b said "see item 23b", and model updating (12f, 24) read "to write"
    beside an external cohort the Other centres tab recalibrates. The figures zip lacked the
    recalibration and Compare-runs figures."""
    import crc_core.metrics as ev
    from crc_core.evaluate import external as ex
    from crc_core.reporting import tripod
    from crc_core.evaluate.run_evaluation import evaluate_run
    from crc_core.runs.store import RunStore
    from tests.test_model_evaluation import stored_run

    store = RunStore(tmp_path)
    run_id = stored_run(store, cohorts=("train", "validation", "external:Lanzhou"), n=90)
    rows = store.predictions(run_id, "external:Lanzhou")  # a scanner that shifts every logit up by 1
    store.set_predictions(run_id, "external:Lanzhou", rows.assign(prob=1 / (1 + np.exp(-(ev.logit(rows["prob"].to_numpy()) + 1)))))
    result = evaluate_run(store, run_id)
    items = tripod.checklist(tmp_path, result).set_index("Item")
    for item, row in items.iterrows():
        assert f"item {item}" not in row["In this work"], (item, row["In this work"])
    updated = ex.recalibrate_cohort(result, "external:Lanzhou", "intercept")
    assert items.loc["12f", "Status"] == items.loc["24", "Status"] == tripod.DOCUMENTED
    assert "calibration-in-the-large" in items.loc["12f", "In this work"]
    assert f"intercept {updated.fit['intercept']:.3f}" in items.loc["24", "In this work"]
    assert ex.compare_centres(result).pooled is None  # one external centre: nothing to pool (issue 26)
    assert "one external centre, so nothing to pool" in items.loc["23b", "In this work"]
    assert "internal validation, a random split of the development data, kept out" in items.loc["12d", "In this work"]
    assert "DerSimonian-Laird" in items.loc["12d", "In this work"]
    assert items.loc["18f", "Status"] == tripod.DOCUMENTED

    plain = evaluate_run(store, stored_run(store, seed=4))
    assert tripod.checklist(tmp_path, plain).set_index("Item").loc["24", "In this work"] == "No model updating was done."

    figures = report.run_figures(tmp_path, result)
    assert "recalibration-external-Lanzhou" in figures and "compare_aucs" in figures  # two finished TSR runs
    assert report.figure_name("recalibration-external-Lanzhou") == "Calibration after recalibration, external: Lanzhou cohort"
    compared = figures["compare_aucs"]
    assert {trace.name.split("·")[-1].strip() for trace in compared.data} == {run_id[-4:], plain.run.run_id[-4:]}
