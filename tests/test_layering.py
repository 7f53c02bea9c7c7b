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


def core_modules(package: Path = REPO_ROOT / "crc_core") -> list[str]:
    """Every module of the package as a dotted name, subpackages (rooms) included."""
    names = []
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def core_files(package: Path = REPO_ROOT / "crc_core") -> list[Path]:
    return sorted(package.rglob("*.py"))


def test_the_walk_finds_modules_inside_rooms(tmp_path):
    room = tmp_path / "crc_core" / "cohort"
    room.mkdir(parents=True)
    for path in (tmp_path / "crc_core" / "__init__.py", room / "__init__.py", room / "table_one.py"):
        path.write_text("")
    assert core_modules(tmp_path / "crc_core") == ["crc_core", "crc_core.cohort", "crc_core.cohort.table_one"]


def test_core_never_imports_streamlit():
    # Import every core module in a clean interpreter and check streamlit stayed out.
    modules = core_modules()
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print('streamlit' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_pages_never_import_the_cli_and_the_core_never_parses_arguments():
    for page in [REPO_ROOT / "app.py", *(REPO_ROOT / "pages").glob("*.py")]:
        assert not {m for m in imported_modules(page) if m.startswith("crc_core.cli")}, page.name
    for module in core_files():
        if module.relative_to(REPO_ROOT / "crc_core").as_posix() != "cli.py":
            assert "argparse" not in imported_modules(module), module.name
            assert "crc_core.cli" not in imported_modules(module), module.name
