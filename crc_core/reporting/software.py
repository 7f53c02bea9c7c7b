"""The software a report names: CRC-TIME's version (with its commit in a checkout), Python's and
the packages' that computed the numbers. The report's Software section and TRIPOD+AI item 13 read it.
"""

from __future__ import annotations

import platform
from importlib import metadata


PACKAGES = ("numpy", "pandas", "scipy", "statsmodels", "scikit-learn", "torch", "torchvision", "SimpleITK", "plotly",
            "streamlit", "pyradiomics-bhklab")


def software_versions() -> dict[str, str]:
    import crc_core

    from crc_core.training.grid import code_version

    versions = {"CRC-TIME": code_version() or crc_core.__version__, "Python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions
