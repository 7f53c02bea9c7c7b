"""The flat module names of release 0.1 keep working for one release (issue 22): each imports,
warns with its new place, and hands out the very objects of the new module; nothing in the
project itself uses them any more."""

import ast
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from crc_core import _compat

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("old", sorted(_compat.MOVED))
def test_every_old_name_imports_warns_with_its_new_place_and_is_the_same_object(old):
    # A clean interpreter: in this one the old module may have been imported (and warned) already.
    new, *more = _compat.MOVED[old]
    code = (
        "import importlib, warnings\n"
        "warnings.simplefilter('error', DeprecationWarning)\n"
        "try:\n"
        f"    importlib.import_module('crc_core.{old}')\n"
        "except DeprecationWarning as warning:\n"
        "    print(warning)\n"
        "warnings.simplefilter('ignore')\n"
        f"old = importlib.import_module('crc_core.{old}')\n"
        "same, seen = True, set()\n"
        f"for target in {[new, *more]!r}:\n"
        "    module = importlib.import_module(target)\n"
        "    public = [n for n in vars(module) if not n.startswith('_') and n not in seen\n"
        "              and getattr(module, n).__class__.__name__ != 'module']\n"
        "    same = same and bool(public) and all(getattr(old, n) is getattr(module, n) for n in public)\n"
        "    seen |= set(public)\n"
        "print(same, len(seen) > 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
    warning, same = result.stdout.strip().splitlines()
    assert warning.startswith(f"crc_core.{old} moved to {new}"), warning
    assert same == "True True"


def test_the_promised_spellings_of_earlier_issues_still_work():
    with pytest.warns(DeprecationWarning, match=r"crc_core\.\w+ moved to crc_core\."):
        from crc_core.evaluation import auc_ci
        from crc_core.model_evaluation import evaluate_run
        from crc_core.stats import table_one
    from crc_core.cohort.table1 import table_one as new_table_one
    from crc_core.evaluate.run_evaluation import evaluate_run as new_evaluate_run
    from crc_core.metrics.roc import auc_ci as new_auc_ci
    from crc_core.runs import RunStore
    from crc_core.runs.store import RunStore as new_run_store

    assert (auc_ci, evaluate_run, table_one, RunStore) == (new_auc_ci, new_evaluate_run, new_table_one,
                                                            new_run_store)


def test_an_unknown_name_in_a_moved_module_says_where_it_looked():
    with warnings.catch_warnings():  # warned already if an earlier test imported it
        warnings.simplefilter("ignore", DeprecationWarning)
        import crc_core.evaluation as old
    with pytest.raises(AttributeError, match=r"crc_core\.evaluation.*now crc_core\.metrics\.roc.*no_such"):
        old.no_such


def _old_names_used(path: Path) -> set[str]:
    text = path.read_text(encoding="utf-8")
    names = set(re.findall(r"\bcrc_core\.(\w+)", text))
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ImportFrom) and node.module == "crc_core":
            names |= {alias.name for alias in node.names}
    return names & set(_compat.MOVED)


def test_nothing_in_the_project_imports_the_old_names():
    sources = [REPO_ROOT / "app.py"]
    for folder in ("crc_core", "pages", "bench", "tests"):
        sources += sorted((REPO_ROOT / folder).rglob("*.py"))
    users = {p.relative_to(REPO_ROOT).as_posix(): _old_names_used(p) for p in sources
             if p.name not in {"_compat.py", "test_compat.py"}}
    assert {path: names for path, names in users.items() if names} == {}
