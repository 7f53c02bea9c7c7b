"""Browser walk: start the real app with `streamlit run`, visit every page in headless Chromium.

Playwright's Python package drives Debian's chromium (installed by `make test`); no browser is
ever downloaded. One screenshot per page lands in test-artifacts/screenshots/.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import unquote, urlparse

import pandas as pd
import pytest

from crc_core.workspace import STATE_DIR_ENV, WORKSPACE_ENV

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO_ROOT / "test-artifacts" / "screenshots"
PAGES = {
    "home": "Patients",
    "cohort": "Clinical and pathology table",
    "labels": "Prevalence by split",
    "ct_roi": "Crops",
    "train": "Train",
    "evaluate": "Evaluate",
}
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def chromium_path() -> str:
    found = os.environ.get("CRC_TIME_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("Debian's chromium is missing: `make test` installs it (apt-get install chromium).")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, server: subprocess.Popen, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"streamlit exited early: {server.stdout.read() if server.stdout else ''}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"streamlit did not answer at {url} within {timeout_s} s")


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory, sample_workspace):
    """The server's remembered workspace: the sample, as if a user had chosen it last time."""
    folder = tmp_path_factory.mktemp("server-state")
    (folder / "last_workspace.json").write_text(json.dumps({"workspace": str(sample_workspace)}))
    return folder


@pytest.fixture(scope="module")
def app_url(sample_workspace, state_dir):
    port = free_port()
    # No $CRC_TIME_WORKSPACE: the dashboard opens the workspace remembered from last time.
    env = {k: v for k, v in os.environ.items() if k != WORKSPACE_ENV}
    env[STATE_DIR_ENV] = str(state_dir)
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true"],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, server)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=20)


@pytest.fixture(scope="module")
def browser(app_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def outside_requests():
    """Every request the pages make to a host other than this machine: there must be none."""
    return []


@pytest.fixture(scope="module")
def browser_page(browser, outside_requests):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.on("request", lambda request: outside_requests.append(request.url)
            if not request.url.startswith(("http://127.0.0.1", "data:", "blob:", "about:")) else None)
    yield page
    page.close()


def wait_for_script(page) -> None:
    """Wait until Streamlit has finished running the page script."""
    page.wait_for_selector('[data-testid="stApp"]', timeout=60_000)
    page.wait_for_function(
        "() => document.querySelector('[data-testid=\"stApp\"]')?.getAttribute('data-test-script-state') === 'notRunning'",
        timeout=60_000,
    )


def open_view(page, name: str) -> None:
    """Click a view on the Evaluate page's bar of views (a segmented control keyed "tab")."""
    page.locator(".st-key-tab").get_by_text(name, exact=True).click()


@pytest.mark.parametrize("page_path", list(PAGES))
def test_every_page_opens_without_an_exception(app_url, browser_page, page_path, sample_workspace):
    # The default page lives at the root URL; Streamlit has no /home route for it.
    browser_page.goto(f"{app_url}/{'' if page_path == 'home' else page_path}?workspace={sample_workspace}")
    wait_for_script(browser_page)
    # The first visible match: a page may also hold the words in a hidden element (a radio's
    # label not yet shown, a collapsed help), which .first alone would wait on forever.
    browser_page.get_by_text(PAGES[page_path]).filter(visible=True).first.wait_for(timeout=30_000)
    # Opened by deep link, the page still runs under app.py's navigation and sidebar.
    browser_page.locator('[data-testid="stSidebar"] [data-testid="stPageLink"]').nth(5).wait_for(timeout=30_000)
    sidebar = browser_page.locator('[data-testid="stSidebar"]').inner_text()
    assert "CT & ROI" in sidebar and "patients" in sidebar
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    # Widgets paint a frame or two after the script ends; let them, so the picture is the page.
    browser_page.wait_for_timeout(1500)
    browser_page.screenshot(path=str(SCREENSHOTS / f"{page_path}.png"), full_page=True)
    exceptions = browser_page.locator('[data-testid="stException"]')
    assert exceptions.count() == 0, exceptions.first.inner_text()
    errors = browser_page.locator('[data-testid="stAlertContentError"]')
    assert errors.count() == 0, errors.first.inner_text()


def test_home_opens_the_workspace_remembered_from_last_time(app_url, browser_page):
    browser_page.goto(f"{app_url}/")
    wait_for_script(browser_page)
    sidebar = browser_page.locator('[data-testid="stSidebar"]')
    sidebar.get_by_text("315 patients").wait_for(timeout=30_000)
    assert "220 train / 95 validation" in sidebar.inner_text()
    values = browser_page.locator('[data-testid="stMetricValue"]')
    values.nth(2).wait_for(timeout=30_000)
    metrics = values.all_inner_texts()
    assert metrics[:3] == ["315", "220", "95"]


def test_typing_another_workspace_in_the_sidebar(app_url, browser_page, tmp_path):
    browser_page.goto(f"{app_url}/")
    wait_for_script(browser_page)
    assert browser_page.get_by_text("Page not found").count() == 0
    field = browser_page.locator('[data-testid="stSidebar"] input[type="text"]')
    field.fill(str(tmp_path / "missing"))
    field.press("Enter")
    browser_page.get_by_text("No usable cohort in this workspace").wait_for(timeout=30_000)
    assert "does not exist" in browser_page.locator('[data-testid="stAlertContentError"]').first.inner_text()
    assert browser_page.locator('[data-testid="stException"]').count() == 0


def test_uploading_tables_gives_table_one(app_url, browser_page, tmp_path):
    # A registry export of 60 patients, as a user would upload it: CSV files from disk.
    clinical = pd.read_csv(REPO_ROOT / "data" / "sample" / "clinical.csv").head(60)
    pathology = pd.read_csv(REPO_ROOT / "data" / "sample" / "pathology.csv").head(60)
    clinical.to_csv(tmp_path / "registry_clinical.csv", index=False)
    pathology.to_csv(tmp_path / "registry_pathology.csv", index=False)
    target = tmp_path / "own-workspace"

    browser_page.goto(f"{app_url}/cohort")
    wait_for_script(browser_page)
    browser_page.get_by_text("Use your own tables").click()
    uploads = browser_page.locator('[data-testid="stFileUploaderDropzoneInput"]')
    uploads.nth(0).set_input_files(str(tmp_path / "registry_clinical.csv"))
    browser_page.get_by_text("Patient ID column of registry_clinical.csv").wait_for(timeout=30_000)
    uploads.nth(1).set_input_files(str(tmp_path / "registry_pathology.csv"))
    browser_page.get_by_text("Patient ID column of registry_pathology.csv").wait_for(timeout=30_000)
    wait_for_script(browser_page)
    folder = browser_page.get_by_label("Workspace folder for these tables")
    folder.fill(str(target))
    folder.press("Enter")
    wait_for_script(browser_page)
    browser_page.get_by_role("button", name="Import into this workspace").click()
    browser_page.get_by_text("Imported 60 patients").wait_for(timeout=30_000)
    assert (target / "clinical.csv").exists()

    counts = clinical["split"].value_counts()
    table = browser_page.locator('[data-testid="stTable"]')
    table.get_by_text(f"train (n = {counts['train']})").wait_for(timeout=30_000)
    assert f"validation (n = {counts['validation']})" in table.inner_text()
    assert browser_page.get_by_text("Statistical analysis performed using Mann-Whitney U test").count() == 1
    assert browser_page.locator('[data-testid="stException"]').count() == 0
    table.scroll_into_view_if_needed()
    browser_page.wait_for_timeout(1000)
    browser_page.screenshot(path=str(SCREENSHOTS / "cohort_table1_after_upload.png"))


def test_ct_roi_processes_the_sample(app_url, browser_page, imaging_workspace):
    browser_page.goto(f"{app_url}/ct_roi")
    wait_for_script(browser_page)
    field = browser_page.locator('[data-testid="stSidebar"] input[type="text"]')
    field.fill(str(imaging_workspace))
    field.press("Enter")
    browser_page.get_by_text("No crops in use yet").wait_for(timeout=30_000)
    browser_page.get_by_role("button", name="Run preprocessing").click()
    browser_page.get_by_text("In use: 315 of 315 patients cropped").first.wait_for(timeout=180_000)
    wait_for_script(browser_page)
    assert (imaging_workspace / "crops" / "latest.json").exists()
    assert browser_page.locator('[data-testid="stImage"]').count() >= 25
    assert browser_page.locator('[data-testid="stException"]').count() == 0
    browser_page.wait_for_timeout(1500)
    browser_page.screenshot(path=str(SCREENSHOTS / "ct_roi_after_preprocessing.png"), full_page=True)


def sidebar_field(page):
    return page.locator('[data-testid="stSidebar"] input[type="text"]')


def workspace_shown(page) -> str:
    """The sidebar's workspace once the page has drawn it (the first script run may not have
    started when the app reports it is not running)."""
    page.wait_for_function(
        "() => document.querySelector('[data-testid=\"stSidebar\"] input[type=\"text\"]')?.value", timeout=30_000
    )
    wait_for_script(page)
    return sidebar_field(page).input_value()


def test_the_workspace_survives_a_reload_a_page_switch_and_a_new_tab(app_url, browser, browser_page, tmp_path, sample_workspace):
    # Found in use: the active workspace lived in session state only, so a reload or a new tab
    # lost the user's imported cohort; and Streamlit's own page menu dropped ?workspace=.
    from crc_core.cohort.importing import import_sample_tables

    own = import_sample_tables(tmp_path / "own").workspace.root
    other = import_sample_tables(tmp_path / "other").workspace.root
    # Opened by a link: the URL names the workspace while another one is remembered.
    browser_page.goto(f"{app_url}/cohort?workspace={own}")
    wait_for_script(browser_page)
    assert workspace_shown(browser_page) == str(own)
    browser_page.locator('[data-testid="stSidebar"] [data-testid="stPageLink"]').get_by_text("Labels").click()
    browser_page.get_by_text("Prevalence by split").wait_for(timeout=30_000)
    wait_for_script(browser_page)
    assert workspace_shown(browser_page) == str(own)
    assert str(own) in unquote(browser_page.url) and "/labels" in browser_page.url
    browser_page.reload()
    wait_for_script(browser_page)
    assert workspace_shown(browser_page) == str(own)
    # Chosen in the sidebar: kept in the URL, and a new tab opens it.
    field = sidebar_field(browser_page)
    field.fill(str(other))
    field.press("Enter")
    browser_page.wait_for_function(f"() => decodeURIComponent(location.search).includes({json.dumps(str(other))})", timeout=30_000)
    second = browser.new_page()
    second.goto(f"{app_url}/")
    wait_for_script(second)
    assert workspace_shown(second) == str(other)
    second.close()


def test_no_page_asks_an_outside_host_for_anything(app_url, browser_page, outside_requests):
    # Found in use: the favicon came from fonts.gstatic.com. A hospital machine asks no one.
    for path in PAGES:
        browser_page.goto(f"{app_url}/{'' if path == 'home' else path}")
        wait_for_script(browser_page)
    browser_page.wait_for_timeout(1000)
    assert outside_requests == []
    icon = browser_page.evaluate("() => document.querySelector(\"link[rel='shortcut icon']\")?.href || ''")
    assert icon.startswith("http://127.0.0.1"), icon


def test_saving_a_split_updates_the_sidebar_at_once(app_url, browser_page, tmp_path):
    # Found in use: after saving a split the sidebar showed the previous counts until the next click.
    from crc_core.cohort.importing import import_sample_tables

    own = import_sample_tables(tmp_path / "split-here").workspace.root
    browser_page.goto(f"{app_url}/cohort?workspace={own}")
    wait_for_script(browser_page)
    sidebar = browser_page.locator('[data-testid="stSidebar"]')
    assert "220 train / 95 validation" in sidebar.inner_text()
    browser_page.get_by_text("k-fold", exact=True).click()
    browser_page.get_by_text("Replace the table's own split", exact=True).click()  # its split is the table's own
    browser_page.get_by_role("button", name="Apply and save the split").click()
    sidebar.get_by_text("315 train in 5 folds").wait_for(timeout=30_000)
    wait_for_script(browser_page)
    assert browser_page.get_by_text("Saved split.csv: 315 patients: 315 train; 5 folds of 63, 63, 63, 63, 63").count() == 1


def test_the_imaging_uploader_promises_what_the_text_says(app_url, browser_page, sample_workspace):
    # Found in use: the uploader said 200 MB per file while the text promised 4,096 MB.
    browser_page.goto(f"{app_url}/ct_roi?workspace={sample_workspace}")
    wait_for_script(browser_page)
    browser_page.get_by_text("Bring your own imaging").click()
    uploader = browser_page.locator('[data-testid="stFileUploader"]').first
    uploader.wait_for(timeout=30_000)
    text = uploader.inner_text()
    assert "4096MB" in text.replace(" ", "") or "4GB" in text.replace(" ", ""), text
    assert "4,096 MB" in browser_page.get_by_text("A zip may be up to").inner_text()


def test_training_a_fast_model_in_the_browser_shows_its_curve_and_auc(app_url, browser_page, training_workspace):
    pytest.importorskip("torch")
    browser_page.goto(f"{app_url}/train?workspace={training_workspace}")
    wait_for_script(browser_page)
    browser_page.get_by_text("random initialisation", exact=True).click()
    browser_page.get_by_role("button", name="Start training").click()
    browser_page.get_by_text("Fast mode: choosing the penalty").wait_for(timeout=180_000)
    wait_for_script(browser_page)
    runs = browser_page.locator('[data-testid="stDataFrame"]').first
    runs.wait_for(timeout=30_000)
    assert browser_page.get_by_text("AUC across folds and repeated splits").count() == 1
    assert browser_page.locator('[data-testid="stException"]').count() == 0
    browser_page.wait_for_timeout(1500)
    browser_page.screenshot(path=str(SCREENSHOTS / "train_after_fast_mode.png"), full_page=True)


def test_a_fine_tune_is_stopped_and_resumed_in_the_browser(app_url, browser_page, training_workspace):
    """Found in use: the page kept saying "Training was stopped" after the run went on, progress read
    "101/4000", and Stop spoke of patients. Train → Stop → Resume, as a user does it."""
    pytest.importorskip("torch")
    from crc_core.runs.store import RunStore

    try:
        browser_page.goto(f"{app_url}/train?workspace={training_workspace}")
        wait_for_script(browser_page)
        browser_page.get_by_text("fine-tune (the paper; GPU)").click()
        browser_page.get_by_text("Fine-tuning (only in the fine-tune mode)").click()
        epochs = browser_page.get_by_label(re.compile("^Epochs"))
        epochs.fill("400")
        epochs.press("Tab")
        browser_page.get_by_label(re.compile("^Batch")).fill("8")
        browser_page.get_by_label(re.compile("^Batch")).press("Tab")
        browser_page.get_by_role("button", name="Start training").click()
        browser_page.get_by_text(re.compile(r"epoch \d+ of 400 · batch \d+ of \d+ · [\d.]+ images/s · ETA")).wait_for(timeout=120_000)
        stop = browser_page.get_by_role("button", name="Stop", exact=True)
        stop.hover()
        browser_page.get_by_text("The run stops after the batch at hand").wait_for(timeout=10_000)  # batches, not patients
        stop.click()
        resume = browser_page.get_by_role("button", name="Resume", exact=True)
        resume.wait_for(timeout=60_000)
        run = RunStore(training_workspace).runs()[0]
        assert run.status == "stopped"
        assert browser_page.get_by_text("Training was stopped").count() == 0  # one message, the one with Resume
        resume.click()
        browser_page.get_by_text(f"Now training: TSR × DenseNet-121 (fine-tuned) · run {run.run_id}").wait_for(timeout=60_000)
        assert browser_page.locator('[data-testid="stException"]').count() == 0
        browser_page.screenshot(path=str(SCREENSHOTS / "train_resumed.png"), full_page=True)
        browser_page.get_by_role("button", name="Stop", exact=True).click()
        browser_page.get_by_role("button", name="Resume", exact=True).wait_for(timeout=60_000)
        steps = RunStore(training_workspace).metrics([run.run_id], "step")
        assert not steps[["fold", "epoch", "step"]].duplicated().any()
    finally:  # never a worker left training after a failed walk
        from crc_core.jobs import list_jobs, request_stop

        for job in list_jobs(training_workspace, "train"):
            if not job.finished:
                request_stop(training_workspace, job.job_id)


def test_a_trained_runs_evaluation_opens_in_the_browser(app_url, browser_page, training_workspace):
    pytest.importorskip("torch")
    from crc_core.training.grid import TrainConfig, train_run

    run_id = train_run(training_workspace, TrainConfig(weights="random", backbones=("resnet34",)))
    browser_page.goto(f"{app_url}/train?workspace={training_workspace}")
    wait_for_script(browser_page)
    browser_page.locator('[data-testid="stSidebar"] [data-testid="stPageLink"]').get_by_text("Evaluate").click()
    wait_for_script(browser_page)
    browser_page.get_by_text("validation: AUC").first.wait_for(timeout=60_000)  # the ROC legend
    # The latest run, in the Run box (Streamlit shows a selectbox's choice as its input's value).
    from playwright.sync_api import expect

    expect(browser_page.get_by_role("combobox", name="Run")).to_have_value(re.compile(re.escape(run_id)), timeout=30_000)
    # Found in use: Back from Evaluate needed two presses (the first render wrote ?run= into the URL).
    assert run_id not in unquote(browser_page.url)
    browser_page.go_back()
    wait_for_script(browser_page)
    assert urlparse(browser_page.url).path.endswith("/train"), browser_page.url
    browser_page.go_forward()
    wait_for_script(browser_page)
    browser_page.get_by_text("validation: AUC").first.wait_for(timeout=60_000)
    open_view(browser_page, "Table 2")
    browser_page.get_by_text("95% CI of the AUC: DeLong").wait_for(timeout=30_000)
    open_view(browser_page, "Calibration")
    browser_page.get_by_text("Calibration-in-the-large").first.wait_for(timeout=30_000)
    # Every view, the new ones included, opens without a traceback.
    for tab, words in (("Robustness", "Not checked yet"), ("Other centres", "No external centre yet"),
                       ("Sample size", "How many patients an external validation"), ("Compare runs", "Runs of TSR to compare"),
                       ("Combined model", "Clinical variables"), ("Report & exports", "TRIPOD+AI checklist")):
        open_view(browser_page, tab)
        browser_page.get_by_text(words).first.wait_for(timeout=30_000)
    assert browser_page.locator('[data-testid="stException"]').count() == 0
    # Found in use: twelve tabs overflowed, half hidden at 1024 px. The bar wraps: every view in sight.
    browser_page.set_viewport_size({"width": 1024, "height": 768})
    browser_page.wait_for_timeout(500)
    for view in ("ROC", "Table 2", "Violin", "Decision curve", "Calibration", "Compare runs", "Grad-CAM", "Combined model",
                 "Robustness", "Other centres", "Sample size", "Report & exports"):
        box = browser_page.locator(".st-key-tab").get_by_text(view, exact=True).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 1024, (view, box)
    browser_page.wait_for_timeout(1000)
    browser_page.screenshot(path=str(SCREENSHOTS / "evaluate_run.png"), full_page=True)


def test_the_report_is_built_and_downloaded_in_the_browser(app_url, browser_page, training_workspace, tmp_path):
    pytest.importorskip("torch")
    from crc_core.training.grid import TrainConfig, train_run

    train_run(training_workspace, TrainConfig(weights="random", backbones=("resnet34",)))
    browser_page.goto(f"{app_url}/evaluate?workspace={training_workspace}")
    wait_for_script(browser_page)
    open_view(browser_page, "Report & exports")
    browser_page.get_by_role("button", name="Build the report").click()
    download_button = browser_page.get_by_role("button", name=re.compile(r"^Download the report"))
    download_button.wait_for(timeout=120_000)
    with browser_page.expect_download() as event:
        download_button.click()
    saved = tmp_path / event.value.suggested_filename
    event.value.save_as(saved)
    document = saved.read_text(encoding="utf-8")
    assert saved.suffix == ".html" and "pseudonymised" in saved.name
    from crc_core.reporting.report import SECTIONS

    assert all(f"id='{anchor}'" in document for anchor, _ in SECTIONS)
    assert str(training_workspace) not in document
    assert browser_page.locator('[data-testid="stException"]').count() == 0
    browser_page.screenshot(path=str(SCREENSHOTS / "evaluate_report.png"), full_page=True)
