"""AppTest of the Cohort and Labels pages: workspace switches, stray rows, type overrides."""

import json
from pathlib import Path

from streamlit.testing.v1 import AppTest

REPO_ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 240


def page(name: str) -> AppTest:
    return AppTest.from_file(str(REPO_ROOT / "pages" / f"{name}.py"), default_timeout=TIMEOUT_S)


def tsr_box(app: AppTest):
    return [n for n in app.number_input if n.label.startswith("TSR high")][0]


def selectbox(app: AppTest, start: str):
    return [s for s in app.selectbox if s.label.startswith(start)][0]


def test_labels_widgets_never_outlive_their_workspace(writable_workspace, tmp_path, use_workspace):
    # Found in use: Labels -> a workspace whose Labels page stops (or no folder) -> back, and the
    # widgets read TSR > 0%, TIL >= 1, IS > 0, TIME >= 1; Save then wrote them over the saved
    # rules. The browser sent the widgets' bare defaults with the switch (seen in the server's
    # session state); they are sent here the same way.
    use_workspace(writable_workspace)
    app = page("labels").run()
    tsr_box(app).set_value(30.0).run()
    app.button(key="save_labels").click().run()
    saved_csv = (writable_workspace / "labels.csv").read_bytes()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "clinical.csv").write_bytes((writable_workspace / "clinical.csv").read_bytes())
    (broken / "pathology.csv").write_text("this is not,the table\nreally,not\n")
    for elsewhere in (broken, tmp_path / "gone"):
        tsr_box(app).set_value(0.0)
        for start in ("TIL high", "Immune Score high", "TIME high"):
            selectbox(app, start).set_value(selectbox(app, start).options[0])
        app.query_params["workspace"] = str(elsewhere)
        app.run()
        assert not app.exception and app.error
        app.query_params["workspace"] = str(writable_workspace)
        app.run()
        assert not app.exception, app.exception
        assert tsr_box(app).value == 30.0
        assert [selectbox(app, s).value for s in ("TIL high", "Immune Score high", "TIME high")] == [2, 2, 2]
        assert "these rules are saved" in app.info[0].value
        app.button(key="save_labels").click().run()
        assert (writable_workspace / "labels.csv").read_bytes() == saved_csv
        assert json.loads((writable_workspace / "labels.json").read_text())["config"]["tsr_cutoff_percent"] == 30.0


def test_labels_widgets_show_each_workspaces_own_saved_rules(writable_workspace, tmp_path, use_workspace):
    import shutil

    other = tmp_path / "other"
    shutil.copytree(writable_workspace, other)
    use_workspace(writable_workspace)
    app = page("labels").run()
    tsr_box(app).set_value(30.0).run()
    app.button(key="save_labels").click().run()
    tsr_box(app).set_value(60.0).run()  # changed, not saved
    app.query_params["workspace"] = str(other)
    app.run()
    assert tsr_box(app).value == 50.0 and "not saved yet" in app.info[0].value  # the paper's: nothing saved there
    app.query_params["workspace"] = str(writable_workspace)
    app.run()
    assert tsr_box(app).value == 30.0 and "these rules are saved" in app.info[0].value


def test_a_pathology_row_left_out_at_import_stays_out_of_the_labels_page(writable_workspace, use_workspace):
    # Found in use: 'CRC007' in pathology against 'CRC 007' in the clinical table; the Labels page
    # then refused everything ("have no split: CRC007") and no page could drop the row.
    clinical = (writable_workspace / "clinical.csv").read_text()
    assert "\nCRC007," in clinical
    (writable_workspace / "clinical.csv").write_text(clinical.replace("\nCRC007,", "\nCRC 007,"))
    use_workspace(writable_workspace)
    app = page("labels").run()
    assert not app.exception, app.exception
    assert not app.error, [e.value for e in app.error]
    stray = [w.value for w in app.warning if "CRC007 (row 8)" in w.value][0]
    assert "left out of the labels" in stray and "'CRC007' (pathology) and 'CRC 007' (clinical)" in stray
    assert app.info[0].value.startswith("314 patients")
    app.button(key="save_labels").click().run()
    assert not app.exception and not app.error
    import pandas as pd

    saved = pd.read_csv(writable_workspace / "labels.csv")
    assert len(saved) == 314 and "CRC007" not in set(saved["patient_id"])


def test_table_one_turns_a_column_continuous_that_was_categorical_at_import(writable_workspace, use_workspace):
    # Found in use: the "Treat as continuous" list offered only what was not categorical when the
    # form was drawn, so ALB, categorical at import, could not be turned continuous.
    (writable_workspace / "column_mapping.json").write_text('{"group_column": "split", "variable_types": {"ALB": "categorical"}}')
    use_workspace(writable_workspace)
    app = page("cohort").run()
    assert not app.exception, app.exception
    levels = app.table[0].value.index.tolist()
    assert "ALB" in levels and len(levels) > 100  # one row per value: categorical
    continuous = [m for m in app.multiselect if m.label == "Treat as continuous"][0]
    assert "ALB" in continuous.options
    continuous.select("ALB")
    [b for b in app.button if b.label == "Compute Table 1"][0].click().run()
    assert not app.exception, app.exception
    view = app.table[0].value
    assert len(view) < 100 and [v for v in view.index if v.startswith("ALB")] in (["ALB, mean ± SD"], ["ALB, median (Q1, Q3)"])


def test_choosing_another_sheet_of_a_workbook_detects_its_columns_again(sample_workspace, use_workspace):
    # Found in use: after a sheet change the ID column, group column and variable types of the
    # first sheet stayed on the page.
    from tests.table_files import workbook_bytes

    data = workbook_bytes({
        "Readme": [["Study", "Note"], ["CRC", "labs on the next sheet"], ["CRC", "two"]],
        "Labs": [["Patient ID", "age", "cohort", "ALB"], *[[f"P{i}", 50 + i, "train" if i < 7 else "validation", 30 + i / 3]
                                                         for i in range(10)]],
    })
    use_workspace(sample_workspace)
    app = page("cohort").run()
    app.file_uploader(key="upload_clinical").set_value(("labs.xlsx", data, "application/vnd.ms-excel")).run()
    assert not app.exception, app.exception
    assert [s for s in app.selectbox if s.label.startswith("Patient ID column of")][0].value == "Study"
    [s for s in app.selectbox if s.label.startswith("Sheet of")][0].set_value("Labs").run()
    assert not app.exception, app.exception
    assert [s for s in app.selectbox if s.label.startswith("Patient ID column of")][0].value == "Patient ID"
    assert [s for s in app.selectbox if s.label.startswith("Group or split column")][0].value == "cohort"
    types = [d for d in app.dataframe if str(d.key).startswith("types_clinical")]
    assert len(types) == 1 and list(types[0].value["column"]) == ["age", "ALB"]


def test_the_split_form_asks_before_replacing_the_tables_own_split(writable_workspace, use_workspace):
    use_workspace(writable_workspace)  # the sample: its split is the clinical table's own column
    assert not (writable_workspace / "split.csv").exists()
    app = page("cohort").run()
    [b for b in app.button if "split" in str(b.label).lower()][0].click().run()
    assert not app.exception, app.exception
    assert any("The split in use is your table's own (column 'split'" in e.value for e in app.error)
    assert not (writable_workspace / "split.csv").exists()
    app.checkbox(key="replace_table_split").check()
    [b for b in app.button if "split" in str(b.label).lower()][0].click().run()
    assert not app.error and (writable_workspace / "split.csv").exists()


def test_labels_with_one_class_are_warned_about_and_saved_only_when_confirmed(writable_workspace, use_workspace):
    use_workspace(writable_workspace)
    app = page("labels").run()
    tsr_box(app).set_value(0.0).run()
    assert any("every one of the 315 patients is high by the rule TSR > 0%" in w.value for w in app.warning)
    assert app.button(key="save_labels").disabled
    app.checkbox(key="save_one_class").check().run()
    app.button(key="save_labels").click().run()
    assert not app.exception and (writable_workspace / "labels.csv").exists()


def test_a_wilcoxon_p_below_a_thousandth_reads_below_a_thousandth_not_zero(imaging_workspace, use_workspace):
    # Found in use: the per-feature table of the reader agreement showed Wilcoxon p 0 (rounded to
    # three decimals); a p value is never 0.
    import pandas as pd

    folder = imaging_workspace / "agreement"
    folder.mkdir()
    pd.DataFrame({"patient_id": ["CRC001", "CRC002"], "status": ["ok", "ok"], "message": ["", ""], "dice": [0.9, 0.8],
                  "hd95_mm": [1.0, 2.0], "volume_r1_ml": [10.0, 12.0], "volume_r2_ml": [11.0, 12.5]}).to_csv(folder / "masks.csv", index=False)
    pd.DataFrame({"feature": ["original_firstorder_Mean", "original_shape_Volume"], "icc": [0.95, 0.71],
                  "icc_low": [0.9, 0.6], "icc_high": [0.98, 0.8], "wilcoxon_p": [0.00002, 0.4321],
                  "mean_r1": [1.0, 2.0], "mean_r2": [1.1, 2.1], "reliable": [True, False]}).to_csv(folder / "features.csv", index=False)
    use_workspace(imaging_workspace)
    app = page("ct_roi").run()
    assert not app.exception, app.exception
    shown = [d.value for d in app.dataframe if "wilcoxon_p" in d.value.columns][0].set_index("feature")["wilcoxon_p"]
    assert shown.to_dict() == {"original_shape_Volume": "0.432", "original_firstorder_Mean": "< 0.001"}


def test_the_samples_table_one_says_that_one_test_in_twenty_is_significant_by_chance(sample_workspace, use_workspace):
    # Found in a new-user walk: the sample's cohorts are split at random (as the paper's), yet its
    # Table 1 said nothing of chance until a split had been saved from the page.
    use_workspace(sample_workspace)
    app = page("cohort").run()
    assert not app.exception, app.exception
    said = [i.value for i in app.info if "split at random" in i.value]
    assert len(said) == 1 and "about 1 in 20" in said[0]
