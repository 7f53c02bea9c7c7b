"""Table 1 to files a manuscript or a statistician can use: CSV, XLSX, Markdown and Word (DOCX).

CSV and XLSX keep every column (exact statistics and p values, the test, why it was chosen);
Markdown and DOCX are the journal layout of :func:`crc_core.cohort.table1.journal_view` with the
footnotes under the table. Every file is written atomically.
"""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

from crc_core.errors import CrcInputError
from crc_core.cohort.table1 import journal_view, used_footnotes
from crc_core.workspace import atomic_write_bytes

FORMATS = {".csv": "CSV", ".xlsx": "Excel", ".md": "Markdown", ".docx": "Word"}
TITLE = "Table 1 Clinical information of patients"


def to_csv_bytes(table: pd.DataFrame) -> bytes:
    return table.to_csv(index=False, lineterminator="\n").encode("utf-8")


STATISTIC, P_VALUE, MISSING, SMD = "t/Z/χ² value", "P value", "Missing, n", "SMD"
#: Excel number formats that print a P value as the table's style does while the cell stays a
#: number: 0.186 and < 0.001 (paper), .186 and .000 (SPSS).
P_FORMATS = {"paper": '[<0.001]"< 0.001";0.000', "spss": ".000"}


def xlsx_journal_view(table: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """:func:`~crc_core.cohort.table1.journal_view` with its numbers as numbers (the statistic, the P value,
    the missing count and the SMD), so a spreadsheet can sort and compute with them; the footnote
    marks move from the statistic into a column of their own. Returns the frame and each numeric
    column's Excel number format."""
    view = journal_view(table)
    at = list(view.columns).index(STATISTIC)
    view.insert(at + 1, "Test", [text.lstrip("0123456789.-") for text in view[STATISTIC]])
    view[STATISTIC] = pd.to_numeric(table["statistic"], errors="coerce").round(3).to_numpy()
    view[P_VALUE] = pd.to_numeric(table["p_value"], errors="coerce").to_numpy()
    if MISSING in view.columns:
        view[MISSING] = table["missing"].astype("Float64").to_numpy()
    if SMD in view.columns:
        view[SMD] = pd.to_numeric(table["smd"], errors="coerce").round(3).to_numpy()
    p_style = table.attrs.get("options", {}).get("p_style", "paper")
    formats = {STATISTIC: "0.000", P_VALUE: P_FORMATS.get(p_style, P_FORMATS["paper"]), MISSING: "0", SMD: "0.000"}
    return view, {c: f for c, f in formats.items() if c in view.columns}


def to_xlsx_bytes(table: pd.DataFrame, title: str = TITLE) -> bytes:
    buffer = io.BytesIO()
    view, number_formats = xlsx_journal_view(table)
    with pd.ExcelWriter(buffer, engine="openpyxl") as writer:
        view.to_excel(writer, sheet_name="Table 1", index=False)
        sheet = writer.sheets["Table 1"]
        for j, name in enumerate(view.columns, start=1):
            if name in number_formats:
                for (cell,) in sheet.iter_rows(min_row=2, min_col=j, max_col=j):
                    cell.number_format = number_formats[name]
        table.to_excel(writer, sheet_name="Details", index=False)
        notes = pd.DataFrame({"note": [title, *used_footnotes(table)]})
        notes.to_excel(writer, sheet_name="Notes", index=False)
        for sheet in writer.book.worksheets:
            for column in sheet.columns:
                width = max(len(str(cell.value or "")) for cell in column)
                sheet.column_dimensions[column[0].column_letter].width = min(60, max(10, width + 2))
    return buffer.getvalue()


def _markdown_cell(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def frame_to_markdown(view: pd.DataFrame, title: str, notes=(), *, right: tuple[str, ...] = ()) -> str:
    """Any table as a Markdown table under a bold title, with notes beneath (columns in ``right``
    aligned right)."""
    header = "| " + " | ".join(_markdown_cell(c) for c in view.columns) + " |"
    rule = "| " + " | ".join("---:" if i and c in right else "---" for i, c in enumerate(view.columns)) + " |"
    lines = [f"**{title}**", "", header, rule]
    for _, row in view.iterrows():
        cells = [_markdown_cell(v).replace("    ", "&nbsp;&nbsp;&nbsp;&nbsp;", 1) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.extend(f"{note}  " for note in notes)
    return "\n".join(lines) + "\n"


def to_markdown(table: pd.DataFrame, title: str = TITLE) -> str:
    return frame_to_markdown(journal_view(table), title, used_footnotes(table), right=("t/Z/χ² value", "P value", "SMD"))


def frame_to_docx(view: pd.DataFrame, title: str, notes=(), *, centre_from: int = 1) -> bytes:
    """Any table as a Word document in the journal layout (three-line style: rules above and below
    the header and under the last row), a bold title above and the notes beneath; the columns from
    ``centre_from`` on centred."""
    from docx import Document
    from docx.enum.text import WD_ALIGN_PARAGRAPH
    from docx.oxml import OxmlElement
    from docx.oxml.ns import qn
    from docx.shared import Pt

    document = Document()
    style = document.styles["Normal"]
    style.font.name = "Times New Roman"
    style.font.size = Pt(9)
    document.add_paragraph().add_run(title).bold = True
    grid = document.add_table(rows=len(view) + 1, cols=len(view.columns))

    def rule(cell, edge: str) -> None:
        borders = cell._tc.get_or_add_tcPr().find(qn("w:tcBorders"))
        if borders is None:
            borders = OxmlElement("w:tcBorders")
            cell._tc.get_or_add_tcPr().append(borders)
        line = OxmlElement(f"w:{edge}")
        line.set(qn("w:val"), "single")
        line.set(qn("w:sz"), "8")
        borders.append(line)

    for j, name in enumerate(view.columns):
        cell = grid.cell(0, j)
        cell.text = str(name)
        cell.paragraphs[0].runs[0].bold = True
        rule(cell, "top")
        rule(cell, "bottom")
    for i, (_, row) in enumerate(view.iterrows(), start=1):
        for j, value in enumerate(row):
            cell = grid.cell(i, j)
            cell.text = str(value)
            if j >= centre_from:
                cell.paragraphs[0].alignment = WD_ALIGN_PARAGRAPH.CENTER
            if i == len(view):
                rule(cell, "bottom")
    for note in notes:
        document.add_paragraph(note).runs[0].font.size = Pt(8)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def to_docx_bytes(table: pd.DataFrame, title: str = TITLE) -> bytes:
    """Table 1 as a Word document in the journal layout, ready to paste into a manuscript."""
    return frame_to_docx(journal_view(table), title, used_footnotes(table))


def export_bytes(table: pd.DataFrame, suffix: str) -> bytes:
    suffix = suffix.lower()
    if suffix == ".csv":
        return to_csv_bytes(table)
    if suffix == ".xlsx":
        return to_xlsx_bytes(table)
    if suffix == ".md":
        return to_markdown(table).encode("utf-8")
    if suffix == ".docx":
        return to_docx_bytes(table)
    raise CrcInputError(
        f"Cannot write Table 1 as {suffix or 'a file without a suffix'}; "
        f"use one of {', '.join(FORMATS)} (the format follows the file name)."
    )


def export_table_one(table: pd.DataFrame, path: Path | str) -> Path:
    """Write ``table`` to ``path`` in the format its suffix names; atomic."""
    path = Path(path)
    data = export_bytes(table, path.suffix)
    try:
        return atomic_write_bytes(path, data)
    except OSError as exc:
        raise CrcInputError(f"Cannot write {path} ({exc.strerror or exc}). Choose a folder you can write to.") from exc


def all_exports(table: pd.DataFrame) -> dict[str, bytes]:
    """Table 1 in every format of :data:`FORMATS`, suffix → bytes (for the page's downloads)."""
    return {suffix: export_bytes(table, suffix) for suffix in FORMATS}
