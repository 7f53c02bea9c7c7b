"""Helpers for tests that need table files on disk: raw bytes, and an XLSX workbook of given sheets."""

from __future__ import annotations

import io
from pathlib import Path

import openpyxl


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def workbook_bytes(sheets: dict[str, list[list[object]]]) -> bytes:
    workbook = openpyxl.Workbook()
    workbook.remove(workbook.active)
    for title, rows in sheets.items():
        sheet = workbook.create_sheet(title)
        for row in rows:
            sheet.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()
