"""Fetch PyRadiomics' real CT volumes (lung1, lung2: image and tumour label, NRRD) for the DICOM tests.

They lie in the ``data/`` folder of the ``pyradiomics-bhklab`` sdist (the version pinned in
requirements-radiomics.txt), which the package index serves; its wheel and its installed package do
not carry them. The files go to ``~/.cache/crc-time/pyradiomics-data`` (or ``$CRC_PYRADIOMICS_DATA``),
never into the repository: the tests that need them skip, saying how to fetch them, when absent.

Run by ``make install-test``; ``python tests/fetch_pyradiomics_data.py`` does it by hand.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

INDEX = "https://pypi.org/simple/pyradiomics-bhklab/"
WANTED = tuple(f"{case}_{part}.nrrd" for case in ("lung1", "lung2") for part in ("image", "label"))
ROOT = Path(__file__).resolve().parents[1]


def target_folder() -> Path:
    return Path(os.environ.get("CRC_PYRADIOMICS_DATA") or Path.home() / ".cache/crc-time/pyradiomics-data")


def pinned_version() -> str:
    text = (ROOT / "requirements-radiomics.txt").read_text()
    return re.search(r"^pyradiomics-bhklab==([\w.]+)", text, re.M).group(1)


def sdist_link(version: str) -> tuple[str, str]:
    """The sdist's URL and the sha256 the index gives for it."""
    page = urllib.request.urlopen(INDEX, timeout=60).read().decode()
    for url in re.findall(r'href="([^"]+)"', page):
        name = url.split("#")[0].rsplit("/", 1)[-1]
        if name == f"pyradiomics_bhklab-{version}.tar.gz" and "#sha256=" in url:
            address, digest = url.split("#sha256=")
            return address, digest
    raise SystemExit(f"{INDEX} lists no sdist of pyradiomics-bhklab {version}")


def main() -> int:
    folder = target_folder()
    if all((folder / name).is_file() for name in WANTED):
        print(f"PyRadiomics' lung volumes are in {folder}")
        return 0
    version = pinned_version()
    url, digest = sdist_link(version)
    archive = urllib.request.urlopen(url, timeout=300).read()
    if hashlib.sha256(archive).hexdigest() != digest:
        raise SystemExit(f"the sdist downloaded from {url} does not match the index's sha256")
    folder.mkdir(parents=True, exist_ok=True)
    found = set()
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as sdist:
        for member in sdist.getmembers():
            parts = Path(member.name).parts
            # Only data/<wanted name>, written under our own name: a member's path is never a path here.
            if member.isfile() and len(parts) >= 2 and parts[-2] == "data" and parts[-1] in WANTED:
                content = sdist.extractfile(member).read()
                with tempfile.NamedTemporaryFile(dir=folder, delete=False) as part:
                    part.write(content)
                os.replace(part.name, folder / parts[-1])
                found.add(parts[-1])
    missing = sorted(set(WANTED) - found)
    if missing:
        raise SystemExit(f"the pyradiomics-bhklab {version} sdist holds no data/{', data/'.join(missing)}")
    print(f"PyRadiomics' lung volumes written to {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
