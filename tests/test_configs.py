"""Every step's config round-trips through JSON, refuses unknown keys by name, and has a
fingerprint that changes with any setting (crc_core.configs)."""

from __future__ import annotations

import dataclasses

import pytest

from crc_core.cohort import ColumnMapping
from crc_core.configs import JsonConfig
from crc_core.errors import CrcInputError
from crc_core.imaging import PreprocessConfig
from crc_core.labels import LabelConfig
from crc_core.reader_study import AgreementConfig
from crc_core.sample import SampleConfig
from crc_core.splits import SplitConfig
from crc_core.stats import TableOneOptions

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
