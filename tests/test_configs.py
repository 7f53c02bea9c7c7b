"""Every step's config round-trips through JSON, refuses unknown keys by name, and has a
fingerprint that changes with any setting (crc_core.configs)."""

from __future__ import annotations

import dataclasses

import pytest

from crc_core.cohort.join import ColumnMapping
from crc_core.configs import JsonConfig
from crc_core.errors import CrcInputError
from crc_core.imaging.volumes import PreprocessConfig
from crc_core.labels.rules import LabelConfig
from crc_core.imaging.reader_study import AgreementConfig
from crc_core.sample.cohort import SampleConfig
from crc_core.cohort.splits import SplitConfig
from crc_core.cohort.table1 import TableOneOptions

# One config of each class with every setting away from its default where it can be.
CONFIGS = [
    SplitConfig(method="external", train_fraction=0.6, seed=9, stratify_by="tsr_high", centre_column="centre",
                external_centres=("B", "C"), n_folds=10),
    LabelConfig(tsr_cutoff_percent=40, til_high_min_grade=3, is_cutoff_source="given",
                marker_cutoffs={"cd3_ca": 1.5, "cd3_im": 2, "cd8_ca": 3, "cd8_im": 4}, time_tsr_point="low",
                resolution="mean"),
    PreprocessConfig(intensity="custom", window_width=123.456789, window_level=-7.25, in_plane_mm=0.7, margin_px=20,
                     context="2.5d", mask_outside=True, size=128, label=2, resample_mask=True),
    SampleConfig(n_patients=40, seed=3, train_fraction=0.6, with_images=False, workers=1),
    AgreementConfig(with_features=False, label=3),
    TableOneOptions(normality="shapiro", alpha=0.01, decimals=3, smd=True, force_test={"age": "welch"},
                    unequal_variance="welch", p_style="spss"),
    ColumnMapping(id_column="MRN", group_column="cohort", group_order=("b", "a"),
                  variable_types={"age": "continuous"}, pathology_columns={"tsr_percent": "TSR (%)"}),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: type(c).__name__)
def test_round_trip_through_a_file(config, tmp_path):
    path = config.save(tmp_path / "config.json")
    restored = type(config).load(path)
    assert restored == config
    assert restored.fingerprint() == config.fingerprint()
    assert type(config).from_json(config.to_json()) == config


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: type(c).__name__)
def test_unknown_keys_are_refused_by_name(config):
    document = {**config.to_dict(), "colour": "blue"}
    with pytest.raises(CrcInputError, match=rf"cfg\.json: unknown setting\(s\) 'colour' for {type(config).__name__}\. Known settings:"):
        type(config).from_dict(document, source="cfg.json")


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: type(c).__name__)
def test_the_fingerprint_follows_every_setting(config):
    default = type(config)()
    assert isinstance(config, JsonConfig)
    assert config.fingerprint() != default.fingerprint()
    assert default.fingerprint() == type(config)().fingerprint()
    assert len(config.fingerprint()) == 12


def test_bad_values_in_a_file_name_the_file(tmp_path):
    (tmp_path / "split.json").write_text('{"method": "random", "train_fraction": 2}')
    with pytest.raises(CrcInputError, match=r"split\.json: The training fraction must be between 0 and 1"):
        SplitConfig.load(tmp_path / "split.json")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(CrcInputError, match="must be a JSON object of settings"):
        SplitConfig.load(tmp_path / "list.json")
    with pytest.raises(CrcInputError, match="does not exist"):
        SplitConfig.load(tmp_path / "absent.json")


def test_every_step_config_is_a_frozen_dataclass():
    for config in CONFIGS:
        assert dataclasses.is_dataclass(config)
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(config, dataclasses.fields(config)[0].name, None)


# ---------------------------------------------------------------------------------------------
# Every JsonConfig, found rather than listed: each field refuses a value of the wrong kind by name


def _every_config_class() -> list[type[JsonConfig]]:
    import importlib
    import pkgutil

    import crc_core

    for module in pkgutil.walk_packages(crc_core.__path__, "crc_core."):
        importlib.import_module(module.name)
    found, todo = [], list(JsonConfig.__subclasses__())
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo += cls.__subclasses__()
    return sorted(set(found), key=lambda c: c.__name__)


CONFIG_CLASSES = _every_config_class()

# What a class cannot be built without (a run to report, a centre to predict ...).
REQUIRED = {
    "CamConfig": {"run_id": "r"},
    "CombinedConfig": {"run_id": "r", "variables": ["age"]},
    "PredictConfig": {"run_id": "r", "source": "other"},
    "ReportConfig": {"run_id": "r"},
    "RobustnessConfig": {"run_id": "r"},
}

# Wrong values for each field's type hint, written out by hand (not derived from the checker): a
# hint not in this table fails the test, so a new field cannot go unchecked.
WRONG = {
    "int": [1.5, "x", "1", True, None, [1], {"a": 1}],
    "int | None": [1.5, "x", True, [1]],
    "float": ["x", "0.5", True, None, [0.5], float("inf"), float("nan")],
    "float | None": ["x", True, [0.5]],
    "bool": ["no", "false", "true", 0, 1, None, [True]],
    "str": [5, 1.5, True, None, ["a"], {"a": "b"}],
    "str | None": [5, True, ["a"]],
    "tuple[str, ...]": [5, True, [5], ["a", None], {"a": "b"}],
    "IsCutoffSource": ["nonesuch", 5, True, ["given"]],
    "TimePoint": ["up", 1, True],
    "Resolution": ["min", 0, None],
    "FinetuneConfig | None": [["a"], "fast", 5, True, {"epochs": "ten"}, {"augment": "no"}],
    "Mapping[str, str]": [["a"], "x", 5, {"age": 5}],
    "dict[str, str]": [["a"], "x", 5, {"age": None}],
    "tuple[tuple[str, str], ...] | Mapping[str, str]": [5, "x", {"age": 5}, [["age"]], [["age", 5]]],
    "tuple[tuple[str, float], ...] | Mapping[str, float]": [5, "x", {"cd3_ca": "high"}, {"cd3_ca": True}, [["cd3_ca"]]],
}

FIELD_CASES = [
    pytest.param(cls, field.name, wrong, id=f"{cls.__name__}.{field.name}={wrong!r}")
    for cls in CONFIG_CLASSES
    for field in dataclasses.fields(cls)
    for wrong in WRONG.get(field.type, [pytest.param(None, marks=pytest.mark.skip)])  # unknown hints fail below
]


def test_every_config_class_is_found_and_every_hint_has_wrong_values():
    names = {cls.__name__ for cls in CONFIG_CLASSES}
    assert len(names) >= 14, names
    assert {"TrainConfig", "FinetuneConfig", "ReportConfig", "RobustnessConfig", "PreprocessConfig"} <= names
    hints = {field.type for cls in CONFIG_CLASSES for field in dataclasses.fields(cls)}
    assert hints <= set(WRONG), f"add wrong values for {sorted(hints - set(WRONG))}"


@pytest.mark.parametrize(("cls", "name", "wrong"), FIELD_CASES)
def test_a_wrongly_typed_value_is_refused_naming_file_key_and_kind(cls, name, wrong):
    document = {**REQUIRED.get(cls.__name__, {}), name: wrong}
    if cls.__name__ == "TrainConfig" and name == "finetune":
        document["mode"] = "finetune"
    with pytest.raises(CrcInputError) as raised:
        cls.from_dict(document, source="cfg.json")
    message = str(raised.value)
    key = f"{name}.{next(iter(wrong))}" if name == "finetune" and isinstance(wrong, dict) else name
    assert message.startswith("cfg.json: the setting "), message
    assert f"'{key}" in message and " must be " in message and "; got " in message, message


@pytest.mark.parametrize("cls", CONFIG_CLASSES, ids=lambda c: c.__name__)
def test_a_round_trip_keeps_every_default(cls, tmp_path):
    required = REQUIRED.get(cls.__name__, {})
    default = cls.from_dict(required)
    assert default == cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in required.items()})
    for field in dataclasses.fields(cls):
        if field.name in required:
            continue
        given = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        if not (given is None or (isinstance(given, (str, tuple, dict)) and not given)):
            assert getattr(default, field.name) == given, field.name  # an empty default may be filled in
    assert cls.from_dict(default.to_dict()) == default
    assert cls.load(default.save(tmp_path / "c.json")) == default
    assert cls.load(tmp_path / "c.json").to_dict() == default.to_dict()


def test_the_issue_s_wrong_values_name_key_and_kind():
    from crc_core.imaging.volumes import PreprocessConfig as Preprocess
    from crc_core.reporting.report import ReportConfig
    from crc_core.evaluate.robustness import RobustnessConfig
    from crc_core.training.grid import TrainConfig

    cases = [
        (TrainConfig, {"seed": 1.5}, "'seed' must be a whole number; got 1.5 (a number)"),
        (TrainConfig, {"seed": "x"}, "'seed' must be a whole number; got \"x\" (text)"),
        (TrainConfig, {"n_repeats": "abc"}, "'n_repeats' must be a whole number"),
        (TrainConfig, {"mode": "finetune", "finetune": {"epochs": "ten"}}, "'finetune.epochs' must be a whole number"),
        (TrainConfig, {"finetune": [1, 2]}, "'finetune' must be an object of FinetuneConfig settings or null; got [1, 2] (a list)"),
        (TrainConfig, {"finetune": [1, 2], "epochs": 3}, "'finetune' must be an object"),
        (TrainConfig, {"mode": "finetune", "finetune": {"epoch": 3}}, "unknown setting(s) 'finetune.epoch'"),
        (ReportConfig, {"run_id": "r", "out": 5}, "'out' must be text; got 5 (a number)"),
        (ReportConfig, {"run_id": "r", "pseudonymise": "no"}, "'pseudonymise' must be true or false; got \"no\" (text)"),
        (RobustnessConfig, {"run_id": "r", "out": 5}, "'out' must be text"),
        (Preprocess, {"mask_outside": "no"}, "'mask_outside' must be true or false"),
    ]
    for cls, document, message in cases:
        with pytest.raises(CrcInputError) as raised:
            cls.from_dict(document, source="bad.json")
        assert str(raised.value).startswith("bad.json: ") and message in str(raised.value), str(raised.value)


def test_numbers_of_the_right_kind_still_pass():
    from crc_core.training.finetune import FinetuneConfig
    from crc_core.training.grid import TrainConfig

    assert FinetuneConfig.from_dict({"lr": 1, "momentum": 0}).lr == 1  # a whole number is a number
    assert TrainConfig.from_dict({"targets": "tsr"}).targets == ("tsr",)  # one target without its list
    config = TrainConfig.from_dict({"mode": "finetune", "finetune": {"epochs": 3}, "batch_size": 8})
    assert (config.finetune.epochs, config.finetune.batch_size) == (3, 8)
