"""The `crc-time` command: sample and info steps, and one-line errors with exit code 2."""

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from crc_core.cli import main

REPO_ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "crc_core.cli", *args], capture_output=True, text=True, cwd=REPO_ROOT
    )


@pytest.mark.parametrize("bad_n", ["0", "-3", "many"])
def test_sample_refuses_bad_n_and_writes_nothing(tmp_path, bad_n):
    target = tmp_path / "ws"
    result = run_cli("--workspace", str(target), "sample", f"--n={bad_n}")
    assert result.returncode == 2
    assert "--n" in result.stderr
    assert not target.exists()


def test_sample_refuses_unwritable_out(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = run_cli("sample", "--out", str(blocker / "ws"), "--n", "12")
    assert result.returncode == 2
    error_lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(error_lines) == 1
    assert error_lines[0].startswith("crc-time: error: Cannot write to the folder")


def test_sample_then_info(tmp_path, capsys):
    target = tmp_path / "ws"
    assert main(["--workspace", str(target), "sample", "--n", "20", "--seed", "3", "--no-images"]) == 0
    assert "20 patients (14 train / 6 validation)" in capsys.readouterr().out
    assert len(pd.read_csv(target / "clinical.csv")) == 20
    assert main(["--workspace", str(target), "info"]) == 0
    out = capsys.readouterr().out
    assert "patients: 20" in out and "train: 14" in out and "validation: 6" in out


def test_info_on_missing_workspace_is_one_line(tmp_path):
    result = run_cli("--workspace", str(tmp_path / "absent"), "info")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "does not exist" in result.stderr and "sample" in result.stderr


def test_table1_and_labels_steps(tmp_path, capsys):
    target = tmp_path / "ws"
    assert main(["--workspace", str(target), "sample", "--n", "60", "--no-images"]) == 0
    assert main(["--workspace", str(target), "labels"]) == 0
    out = capsys.readouterr().out
    assert "labels written to" in out and "tsr_high" in out
    labels = pd.read_csv(target / "labels.csv")
    assert {"tsr_high", "til_high", "is_score", "is_high", "time_score", "time_high"} <= set(labels.columns)
    assert main(["--workspace", str(target), "table1", "--group", "split", "--out", str(tmp_path / "t1.md")]) == 0
    assert "Table 1 by split" in capsys.readouterr().out
    assert (tmp_path / "t1.md").read_text().startswith("**Table 1")
    assert main(["--workspace", str(target), "table1", "--group", "tsr_high", "--out", str(tmp_path / "t1.docx")]) == 0
    assert (tmp_path / "t1.docx").stat().st_size > 0


def test_table1_with_an_unknown_format_is_one_line_and_exit_2(tmp_path):
    target = tmp_path / "ws"
    assert main(["--workspace", str(target), "sample", "--n", "20", "--no-images"]) == 0
    result = run_cli("--workspace", str(target), "table1", "--out", str(tmp_path / "t1.pdf"))
    assert result.returncode == 2
    assert result.stderr.strip().startswith("crc-time: error: Cannot write Table 1 as .pdf")
    assert not (tmp_path / "t1.pdf").exists()


def test_labels_with_a_bad_marker_cutoff_is_refused(tmp_path):
    target = tmp_path / "ws"
    assert main(["--workspace", str(target), "sample", "--n", "20", "--no-images"]) == 0
    result = run_cli("--workspace", str(target), "labels", "--marker-cutoff", "cd3_ca=lots")
    assert result.returncode == 2
    assert "MARKER=NUMBER" in result.stderr
    assert not (target / "labels.csv").exists()


# ---------------------------------------------------------------------------------------------
# --config files with values of the wrong kind: one line naming the file and the key, nothing written


def tree(root: Path) -> dict[str, int]:
    """Every file and folder under ``root`` with its size (0 for a folder): what a refusal must leave."""
    return {str(p.relative_to(root)): (p.stat().st_size if p.is_file() else 0) for p in sorted(root.rglob("*"))}


@pytest.fixture(scope="module")
def tables_workspace(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cli-config") / "ws"
    assert main(["--workspace", str(root), "sample", "--n", "20", "--no-images"]) == 0
    return root


BAD_CONFIGS = [
    ("train", {"seed": 1.5}, "'seed' must be a whole number; got 1.5"),
    ("train", {"seed": "x"}, "'seed' must be a whole number; got \"x\" (text)"),
    ("train", {"n_repeats": "abc"}, "'n_repeats' must be a whole number"),
    ("train", {"mode": "finetune", "finetune": {"epochs": "ten"}}, "'finetune.epochs' must be a whole number"),
    ("train", {"finetune": [100, 32]}, "'finetune' must be an object of FinetuneConfig settings or null"),
    ("report", {"run_id": "r", "out": 5}, "'out' must be text; got 5 (a number)"),
    ("report", {"run_id": "r", "pseudonymise": "no"}, "'pseudonymise' must be true or false; got \"no\" (text)"),
    ("figures", {"run_id": "r", "pseudonymise": "yes"}, "'pseudonymise' must be true or false"),
    ("robustness", {"run_id": "r", "out": 5}, "'out' must be text"),
    ("preprocess", {"mask_outside": "no"}, "'mask_outside' must be true or false"),
    ("split", {"seed": 2.5}, "'seed' must be a whole number"),
]


@pytest.mark.parametrize(("step", "document", "message"), BAD_CONFIGS, ids=lambda v: str(v)[:40])
def test_a_config_of_the_wrong_kind_is_one_line_naming_file_and_key(tables_workspace, tmp_path, capsys, step, document,
                                                                     message):
    import json

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(document))
    before = tree(tables_workspace)
    assert main(["--workspace", str(tables_workspace), step, "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"crc-time: error: {bad}: the setting ") and message in err, err
    assert err.count("\n") == 1
    assert tree(tables_workspace) == before


def test_train_with_a_bad_config_prints_no_traceback(tables_workspace, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"seed": "x", "targets": ["tsr"]}')
    result = run_cli("--workspace", str(tables_workspace), "train", "--config", str(bad))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip() == f"crc-time: error: {bad}: the setting 'seed' must be a whole number; got \"x\" (text)."


@pytest.mark.parametrize(("step", "out"), [
    ("report", "new/deep/r.html"), ("figures", "new/deep"), ("figures", "new/deep/f.zip"), ("robustness", "new/deep"),
    ("validation-size", "new/deep/n.csv"), ("evaluate", "new/deep"),
])
def test_a_step_on_an_unknown_run_makes_no_folder(tables_workspace, tmp_path, capsys, step, out):
    before = tree(tables_workspace)
    assert main(["--workspace", str(tables_workspace), step, "--run", "nosuch", "--out", str(tmp_path / out)]) == 2
    assert "There is no run 'nosuch'" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()
    assert tree(tables_workspace) == before


def test_an_output_folder_that_cannot_be_made_is_still_refused_first(tables_workspace, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert main(["--workspace", str(tables_workspace), "report", "--run", "nosuch", "--out",
                 str(tmp_path / "file" / "deep" / "r.html")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
