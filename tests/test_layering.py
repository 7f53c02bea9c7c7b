"""The layering the architecture promises: crc_core never imports Streamlit, pages never import
the CLI, and only the CLI parses command-line arguments."""

import ast
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def test_core_never_imports_streamlit():
    # Import every core module in a clean interpreter and check streamlit stayed out.
    modules = sorted(p.stem for p in (REPO_ROOT / "crc_core").glob("*.py") if p.stem != "__init__")
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module('crc_core.' + name)\n"
        "print('streamlit' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_pages_never_import_the_cli_and_the_core_never_parses_arguments():
    for page in [REPO_ROOT / "app.py", *(REPO_ROOT / "pages").glob("*.py")]:
        assert not {m for m in imported_modules(page) if m.startswith("crc_core.cli")}, page.name
    for module in (REPO_ROOT / "crc_core").glob("*.py"):
        if module.name != "cli.py":
            assert "argparse" not in imported_modules(module), module.name
            assert "crc_core.cli" not in imported_modules(module), module.name
