"""The flat module names of release 0.1 (``crc_core.stats``, ``crc_core.evaluation`` ...), kept
importable for one more release after crc_core moved into rooms (issue 22).

One finder on ``sys.meta_path`` answers every old name with a stand-in module whose names are
those of the new module(s), the very same objects, and says once, as a ``DeprecationWarning``
from the line that imported it, where the module lives now. Old names that are rooms today
(``crc_core.runs``, ``crc_core.labels``, ``crc_core.cohort``, ``crc_core.imaging``,
``crc_core.sample``, ``crc_core.training``) need no stand-in: each room's face hands on the names
the old module had. Remove this file, and its import in ``crc_core/__init__.py``, in release 0.3.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings

# old flat name -> where its names live now, the first module first (a split module has several)
MOVED: dict[str, tuple[str, ...]] = {
    "pathology": ("crc_core.cohort.pathology",),
    "cohort_import": ("crc_core.cohort.importing",),
    "splits": ("crc_core.cohort.splits",),
    "stats": ("crc_core.cohort.table1",),
    "table_export": ("crc_core.cohort.table_export",),
    "kappa": ("crc_core.metrics.kappa",),
    "preprocess": ("crc_core.imaging.preprocess",),
    "archive": ("crc_core.imaging.archive",),
    "viewer": ("crc_core.imaging.viewer",),
    "agreement": ("crc_core.imaging.agreement",),
    "reader_study": ("crc_core.imaging.reader_study",),
    "evaluation": ("crc_core.metrics.roc", "crc_core.metrics.threshold", "crc_core.metrics.decision_curves",
                   "crc_core.metrics.calibration", "crc_core.metrics.inputs"),
    "recalibration": ("crc_core.metrics.recalibration",),
    "reclassification": ("crc_core.metrics.reclassification",),
    "meta_analysis": ("crc_core.metrics.meta_analysis",),
    "sample_size": ("crc_core.metrics.sample_size",),
    "backbones": ("crc_core.networks.backbones",),
    "linear_models": ("crc_core.networks.linear_models",),
    "devices": ("crc_core.networks.devices",),
    "run_views": ("crc_core.runs.views",),
    "finetune": ("crc_core.training.finetune",),
    "datasets": ("crc_core.training.datasets",),
    "features": ("crc_core.training.features",),
    "harmonisation": ("crc_core.training.harmonisation",),
    "model_evaluation": ("crc_core.evaluate.run_evaluation",),
    "threshold_side": ("crc_core.evaluate.threshold_side",),
    "predict": ("crc_core.evaluate.predict",),
    "cam": ("crc_core.evaluate.cam",),
    "robustness": ("crc_core.evaluate.robustness",),
    "combined_model": ("crc_core.evaluate.combined_model",),
    "external": ("crc_core.evaluate.external",),
    "report": ("crc_core.reporting.report",),
    "tripod": ("crc_core.reporting.tripod",),
    "methods": ("crc_core.reporting.methods",),
    "phantom": ("crc_core.sample.phantom",),
}


def new_place(old: str) -> str:
    """Where the old flat module ``crc_core.<old>`` lives now, in words for the warning."""
    return " and ".join(MOVED[old])


class MovedModule(types.ModuleType):
    """Stands in for an old flat module: every name is looked up in the new module(s)."""

    def __init__(self, name: str, targets: tuple[str, ...]) -> None:
        super().__init__(name, f"Moved to {' and '.join(targets)}; this name goes in release 0.3.")
        self.__moved_to__ = targets

    def __getattr__(self, name: str) -> object:
        if name.startswith("__"):
            raise AttributeError(name)
        for target in self.__moved_to__:
            module = importlib.import_module(target)
            if hasattr(module, name):
                return getattr(module, name)
        raise AttributeError(f"module {self.__name__!r} (now {' and '.join(self.__moved_to__)}) "
                             f"has no attribute {name!r}")

    def __dir__(self) -> list[str]:
        return sorted({n for t in self.__moved_to__ for n in dir(importlib.import_module(t))})


class MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``crc_core.<old>`` for each old flat name, after every real module has been tried."""

    def find_spec(self, fullname, path=None, target=None):
        package, _, old = fullname.rpartition(".")
        if package == "crc_core" and old in MOVED:
            return importlib.machinery.ModuleSpec(fullname, self)
        return None

    def create_module(self, spec):
        return MovedModule(spec.name, MOVED[spec.name.rpartition(".")[2]])

    def exec_module(self, module):
        old = module.__name__
        warnings.warn(f"{old} moved to {new_place(old.rpartition('.')[2])}; import it from there "
                      f"(the old name goes in release 0.3)", DeprecationWarning,
                      stacklevel=2)  # warn skips the import system's own frames: this is the import line


def install() -> None:
    if not any(isinstance(finder, MovedModuleFinder) for finder in sys.meta_path):
        # first: an editable install of an older checkout would otherwise answer the old names
        sys.meta_path.insert(0, MovedModuleFinder())
