"""An idle dashboard costs nothing: the server started as `make run` starts it, with the Train page
(and then Home) open in headless Chromium and nothing running, its CPU time over 30 s read from
/proc — once with the project's settings (.streamlit/config.toml: no file watcher) and once with
Streamlit's default watcher, which follows the whole project folder (.venv and workspaces
included). Prints % of one core for each and their ratio; goal ≤ 5% with the project's settings.
Never asserts on time.

    .venv/bin/python bench/idle.py [--seconds 30]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))  # utime, stime, cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def idle_share(workspace: Path, pages: list[str], seconds: float, extra: list[str]) -> float:
    """% of one core the server uses while ``pages`` are open and nothing runs."""
    from playwright.sync_api import sync_playwright

    port = _free_port()
    server = subprocess.Popen([str(ROOT / ".venv" / "bin" / "streamlit"), "run", "app.py", "--server.port", str(port),
                               *extra], cwd=ROOT, env={**os.environ, "CRC_TIME_WORKSPACE": str(workspace)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.3)
        chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium,
                                                 args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            tabs = []
            for page_name in pages:
                tab = browser.new_page()
                tab.goto(f"http://127.0.0.1:{port}/{page_name}?workspace={workspace}")
                tab.wait_for_selector('[data-testid="stApp"]', timeout=60_000)
                tabs.append(tab)
            time.sleep(5)  # the pages have drawn; from here on nothing happens
            before, started = _cpu_seconds(server.pid), time.monotonic()
            time.sleep(seconds)
            used = _cpu_seconds(server.pid) - before
            elapsed = time.monotonic() - started
            browser.close()
        return 100 * used / elapsed
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds measured (default 30)")
    parser.add_argument("--smoke", action="store_true", help="2 s measured: checks it runs")
    args = parser.parse_args()
    if args.smoke:
        args.seconds = 2.0
    from crc_core.sample.cohort import SampleConfig, build_sample_workspace

    scratch = Path(tempfile.mkdtemp(prefix="idle-bench-"))
    try:
        workspace = build_sample_workspace(scratch / "workspace", SampleConfig(n_patients=60, workers=1)).root
        project = idle_share(workspace, ["train", ""], args.seconds, [])
        print(f"idle server, Train and Home open, the project's settings (no file watcher): {project:.1f}% of one core "
              f"over {args.seconds:.0f} s (goal ≤ 5%)")
        watched = idle_share(workspace, ["train", ""], args.seconds, ["--server.fileWatcherType", "auto"])
        print(f"idle server, the same pages, Streamlit's default file watcher: {watched:.1f}% of one core")
        print(f"ratio: {watched / max(project, 0.01):.1f} (default watcher ÷ the project's settings)")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
