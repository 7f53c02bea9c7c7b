"""Specifications for crc_core.cohort.importing: a user's tables into a workspace, nothing of anyone's
lost, the group column saved as the split, the pathology columns mapped at import."""

from __future__ import annotations

import pandas as pd
import pytest

from crc_core.cohort.join import ColumnMapping, read_column_mapping, validate_table
from crc_core.cohort.importing import (
    WorkspaceOccupied,
    import_cohort_tables,
    import_prepared,
    import_sample_tables,
    prepare_table,
)
from crc_core.errors import CrcInputError
from crc_core.cohort.splits import read_split
from crc_core.tables import read_table
from crc_core.workspace import Workspace

PATHOLOGY = "patient_id,tsr_percent,til_grade,cd3_ca,cd3_im,cd8_ca,cd8_im\n" + "".join(
    f"P{i},{10 * (i % 9 + 1)},{i % 4},{100 + i},{200 + i},{50 + i},{80 + i}\n" for i in range(10)
)


def clinical_csv(group: list[str]) -> str:
    return "Patient ID,age,cohort\n" + "".join(f"P{i},{50 + i},{g}\n" for i, g in enumerate(group))


def prepared(tmp_path, clinical_text: str, pathology_text: str = PATHOLOGY, **pathology_choices):
    (tmp_path / "c.csv").write_text(clinical_text)
    (tmp_path / "p.csv").write_text(pathology_text)
    clinical = prepare_table(read_table(tmp_path / "c.csv"), "clinical", group_column="cohort")
    pathology = prepare_table(read_table(tmp_path / "p.csv"), "pathology", **pathology_choices)
    return clinical, pathology


def test_the_group_column_becomes_the_split_and_every_type_is_kept(tmp_path):
    # Found in use: the group column chosen at import was not saved ("no split yet").
    clinical, pathology = prepared(tmp_path, clinical_csv(["Training"] * 7 + ["Test"] * 3))
    result = import_prepared(tmp_path / "ws", clinical, pathology)
    assert result.split.describe() == "7 train / 3 validation"
    assert read_split(result.workspace).config.column == "cohort"
    mapping = read_column_mapping(result.workspace)
    assert mapping.group_column == "cohort"
    assert mapping.type_overrides["age"] == "categorical"  # 10 whole numbers: codes by the rule
    assert mapping.type_overrides["cd3_ca"] == "categorical"
    assert "patient_id" not in mapping.type_overrides and "Patient ID" not in mapping.type_overrides


def test_a_group_column_that_is_not_a_split_is_said_so(tmp_path):
    clinical, pathology = prepared(tmp_path, clinical_csv(["A", "B"] * 5))
    result = import_prepared(tmp_path / "ws", clinical, pathology)
    assert result.split is None
    assert any("does not name training and validation patients" in note for note in result.notes)


def test_a_folder_holding_a_cohort_is_never_overwritten_without_confirmation(tmp_path):
    # Found in use: "Import the sample tables instead" silently replaced the user's tables and left
    # their old split.csv behind.
    clinical, pathology = prepared(tmp_path, clinical_csv(["train"] * 7 + ["validation"] * 3))
    target = tmp_path / "ws"
    import_prepared(target, clinical, pathology)
    (target / "labels.csv").write_text("patient_id\nP1\n")
    before = (target / "clinical.csv").read_bytes()
    with pytest.raises(WorkspaceOccupied, match=r"already holds a cohort \(10 patients in clinical\.csv; split 7 train / 3 validation; labels\)"):
        import_sample_tables(target)
    assert (target / "clinical.csv").read_bytes() == before

    result = import_sample_tables(target, replace=True)
    assert len(result.join.table) == 315
    assert not (target / "labels.csv").exists()  # derived from the old tables: removed with them
    assert read_split(result.workspace).describe() == "220 train / 95 validation"


def test_pathology_columns_with_other_names_are_mapped_or_refused_by_name(tmp_path):
    # Found in use: "TSR (%)" imported without a word and failed later on the Labels page.
    renamed = PATHOLOGY.replace("tsr_percent", "TSR (%)").replace("til_grade", "TILs").replace("cd3_ca", "CD3 CT")
    clinical, pathology = prepared(tmp_path, clinical_csv(["train"] * 10), renamed)
    assert {"tsr_percent", "til_grade", "cd3_ca"} <= set(pathology.table.columns)
    assert pathology.mapping.pathology_map["tsr_percent"] == "TSR (%)"

    (tmp_path / "odd.csv").write_text(PATHOLOGY.replace("tsr_percent", "stroma share").replace("cd8_im", "X"))
    with pytest.raises(CrcInputError, match=r"odd\.csv: no column chosen for TSR, % stroma \(10-90\) \(tsr_percent\), "
                                            r"CD8\+ cells/mm², invasive margin \(cd8_im\)\. Choose the column"):
        prepare_table(read_table(tmp_path / "odd.csv"), "pathology")
    chosen = prepare_table(read_table(tmp_path / "odd.csv"), "pathology",
                           pathology_columns={"tsr_percent": "stroma share", "til_grade": "til_grade", "cd3_ca": "cd3_ca",
                                              "cd3_im": "cd3_im", "cd8_ca": "cd8_ca", "cd8_im": "X"})
    assert chosen.table["tsr_percent"].iloc[1] == 20


def test_import_refuses_a_mapping_of_absent_columns_and_writes_nothing(tmp_path):
    clinical = validate_table(pd.DataFrame({"patient_id": ["A", "B"], "age": [50, 60]}))
    pathology = validate_table(pd.DataFrame({"patient_id": ["A", "B"], "TSR": [30, 60]}))
    with pytest.raises(CrcInputError, match="ghost"):
        import_cohort_tables(tmp_path / "ws", clinical, pathology, ColumnMapping(group_column="ghost"))
    assert not (tmp_path / "ws").exists()
    assert not Workspace(tmp_path / "ws").holds_cohort()


# --- a numeric column with a stray word or a missing-value code ---------------------------------


def tree(root) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes: what 'left unchanged' is checked against."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def sample_clinical_with(workspace, tmp_path, alb_cells: dict[int, str]):
    """The sample's clinical table with some ALB cells (0-based data rows) replaced by text."""
    table = pd.read_csv(workspace / "clinical.csv", dtype=str, keep_default_na=False)
    for position, text in alb_cells.items():
        table.loc[position, "ALB"] = text
    path = tmp_path / "my-clinical.csv"
    table.to_csv(path, index=False)
    return read_table(path)


def test_one_word_in_a_lab_column_is_refused_at_import_by_row_and_the_workspace_is_unchanged(
    writable_workspace, tmp_path
):
    # Found in use: "n.d.x" in one ALB cell of the sample made ALB a 278-level categorical, and
    # Table 1 ran a χ² with df = 277.
    before = tree(writable_workspace)
    read = sample_clinical_with(writable_workspace, tmp_path, {5: "n.d.x"})
    with pytest.raises(
        CrcInputError, match=r"my-clinical\.csv: text in a numeric column — row 7, column 'ALB': 'n\.d\.x'"
    ):
        prepared_clinical = prepare_table(read, "clinical", group_column="split")
        pathology = prepare_table(read_table(writable_workspace / "pathology.csv"), "pathology")
        import_prepared(writable_workspace, prepared_clinical, pathology, replace=True)
    assert tree(writable_workspace) == before


def test_missing_value_codes_in_a_lab_column_are_missing_in_table_one_and_said_at_import(
    writable_workspace, tmp_path
):
    from crc_core.cohort.join import load_workspace_cohort
    from crc_core.cohort.table1 import table_one

    codes = {5: "n.d.", 6: "N.D.", 7: "—", 8: "-", 9: "missing", 10: "."}
    read = sample_clinical_with(writable_workspace, tmp_path, codes)
    clinical = prepare_table(read, "clinical", group_column="split")
    pathology = prepare_table(read_table(writable_workspace / "pathology.csv"), "pathology")
    result = import_prepared(tmp_path / "ws", clinical, pathology)
    assert read_column_mapping(result.workspace).type_overrides["ALB"] == "continuous"
    assert any("6 cells read as missing" in note and "ALB" in note for note in result.notes), result.notes

    cohort = load_workspace_cohort(result.workspace)
    table = table_one(cohort, "split", ["ALB"])
    assert len(table) == 1 and table["test"].iloc[0] != "Pearson χ²"  # one row: a measurement
    assert table["missing"].iloc[0] == len(codes)


def test_a_stray_pathology_row_stays_out_of_the_labels_and_near_miss_ids_are_pointed_out(tmp_path):
    # Found in use: pathology 'P3x' against clinical 'p3 X' was "left out of the cohort" at
    # import, then Labels refused it for good ("have no split: P3x").
    from crc_core.labels.rules import label_workspace

    clinical_text = clinical_csv(["train"] * 7 + ["validation"] * 3).replace("\nP3,", "\np3 X,")
    clinical, pathology = prepared(tmp_path, clinical_text, PATHOLOGY.replace("\nP3,", "\nP3x,"))
    result = import_prepared(tmp_path / "ws", clinical, pathology)
    note = [n for n in result.notes if "left out of the cohort" in n][0]
    assert "differ only by spaces or case: 'P3x' (pathology) and 'p3 X' (clinical)" in note
    assert "write the ID the same way in both tables" in note

    labelled = label_workspace(result.workspace)
    assert "P3x" not in set(labelled.labels["patient_id"]) and len(labelled.labels) == 9
    stray = [w for w in labelled.warnings if "P3x (row 5)" in w][0]
    assert "left out of the labels" in stray and "'P3x' (pathology) and 'p3 X' (clinical)" in stray
    saved = pd.read_csv(result.workspace.labels_csv)
    assert "P3x" not in set(saved["patient_id"])


def test_ids_that_differ_otherwise_are_not_called_near_misses():
    from crc_core.cohort.join import near_misses

    assert near_misses(["CRC007", "CRC 008", "A-1"], ["crc 007", "CRC8", "A1", "CRC008"]) == [
        ("CRC007", "crc 007"), ("CRC 008", "CRC008")]


@pytest.mark.parametrize("kind", ["semicolon", "tab", "xlsx"])
def test_decimal_commas_with_a_missing_code_are_numbers_with_the_missing_counted(writable_workspace, tmp_path, kind):
    # Found in use: ALB written 34,6 (a German Excel) with one n.d. became 39 levels in Table 1,
    # with "Missing 0".
    from tests.table_files import workbook_bytes

    from crc_core.cohort.join import load_workspace_cohort
    from crc_core.cohort.table1 import table_one

    table = pd.read_csv(writable_workspace / "clinical.csv", dtype=str, keep_default_na=False)
    table["ALB"] = table["ALB"].str.replace(".", ",", regex=False)
    table.loc[4, "ALB"] = "n.d."
    if kind == "xlsx":
        path = tmp_path / "labs.xlsx"
        path.write_bytes(workbook_bytes({"Labor": [list(table.columns), *table.to_numpy().tolist()]}))
    else:
        path = tmp_path / ("labs.csv" if kind == "semicolon" else "labs.tsv")
        table.to_csv(path, index=False, sep=";" if kind == "semicolon" else "\t")
    read = read_table(path)
    assert any("decimal commas read as decimal points in" in n and "ALB" in n for n in read.notes), read.notes
    clinical = prepare_table(read, "clinical", group_column="split")
    assert clinical.mapping.type_overrides["ALB"] == "continuous"
    assert any("1 cell read as missing" in n and "ALB 1 ('n.d.')" in n for n in clinical.missing_notes)
    pathology = prepare_table(read_table(writable_workspace / "pathology.csv"), "pathology")
    result = import_prepared(tmp_path / "ws", clinical, pathology)
    cohort = load_workspace_cohort(result.workspace)
    expected = pd.read_csv(writable_workspace / "clinical.csv")["ALB"].drop(index=4)
    assert cohort["ALB"].drop(index=4).tolist() == pytest.approx(expected.tolist())
    row = table_one(cohort, "split", ["ALB"])
    assert len(row) == 1 and row["missing"].iloc[0] == 1
