"""Big sheets written as plain sheet XML into a workbook openpyxl saved.

openpyxl makes a cell object per value; at a million SIM rows (ten million cells) that alone takes minutes.
The workbook (styles, the small sheets, charts) stays openpyxl's: each big sheet is saved holding its header
and one sample row (`sample_row`) whose cells carry the styles the rows need, and `fill_sheets` rewrites the
archive once, putting the rows where the sample row was. Text is written as inline strings, made safe the same
way everywhere: no illegal XML characters, at most Excel's cell length, and text that could be read as a
formula is marked as typed text (quote prefix).
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from xml.etree import ElementTree

from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter

# A text cell starting with one of these could be read as a formula by Excel or by
# whatever the sheet is exported to (CSV injection).
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
EXCEL_MAX_TEXT = 32_767
MONEY_FORMAT = "#,##0.00"

# Column kinds of a row given to `fill_sheets`: text, number, money (number in MONEY_FORMAT), bold text.
TEXT, NUMBER, MONEY, BOLD = "t", "n", "m", "b"

# zlib level of the filled sheets: 1 is several times faster than the default 6 and the sheet XML is so
# repetitive that the file is only somewhat larger.
COMPRESS_LEVEL = 1
_NS = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main",
       "r": "http://schemas.openxmlformats.org/officeDocument/2006/relationships",
       "rel": "http://schemas.openxmlformats.org/package/2006/relationships"}
_SAMPLE_ROW = re.compile(rb'<row r="2"[^>]*>.*?</row>', re.S)
_SAMPLE_STYLE = re.compile(rb'<c r="([A-C])2"[^>]*?\bs="(\d+)"')
_DIMENSION = re.compile(rb'<dimension ref="[^"]*"\s*/>')
_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})


def sample_row(ws) -> list:
    """The second row of a big sheet before it is filled: a money cell, a typed-text cell, a bold cell."""
    money = WriteOnlyCell(ws, 0)
    money.number_format = MONEY_FORMAT
    quoted = WriteOnlyCell(ws, "=")
    quoted.data_type = "s"
    quoted.quotePrefix = True
    bold = WriteOnlyCell(ws, "bold")
    bold.font = Font(bold=True)
    return [money, quoted, bold]


class _Cells:
    """Turns rows of values into sheet XML with the sample row's style ids."""

    # Most text in a big sheet repeats (group and plan names, yes/no, customers): each text cell is made once
    # and looked up after; the memo is emptied when it holds this many (unique ICCIDs pass through it).
    MEMO_SIZE = 50_000

    def __init__(self, styles: dict[str, str], width: int):
        self.money, self.quoted, self.bold = styles["A"], styles["B"], styles["C"]
        self.letters = [get_column_letter(i + 1) for i in range(width)]
        self._memo: dict[tuple, str] = {}

    def _text_cell(self, value, style: str | None) -> str:
        """A text cell without its reference: ' t="inlineStr"...</c>', or "" for no text."""
        value = str(value)
        if not (value.isascii() and value.isalnum()):  # plain letters and digits (an ICCID) need none of this
            value = ILLEGAL_CHARACTERS_RE.sub("", value)[:EXCEL_MAX_TEXT]
            if not value:
                return ""
            if style is None and value.startswith(FORMULA_TRIGGERS):
                style = self.quoted
        space = ' xml:space="preserve"' if value[0].isspace() or value[-1].isspace() else ""
        s = f' s="{style}"' if style else ""
        return f' t="inlineStr"{s}><is><t{space}>{value.translate(_ESCAPES)}</t></is></c>'

    def body(self, value, *, bold: bool = False) -> str:
        """A text cell as `row` writes it, without its opening `<c r="…"` (to be put after one): "" for no text."""
        return self._text_cell(value, self.bold if bold else None)

    def text(self, ref: str, value, style: str | None) -> str:
        if type(value) is not str:  # 1 and Decimal("1.0") are equal keys but not the same text
            cell = self._text_cell(value, style)
            return f'<c r="{ref}"{cell}' if cell else ""
        key = (value, style)
        cell = self._memo.get(key)
        if cell is None:
            if len(self._memo) >= self.MEMO_SIZE:
                self._memo.clear()
            cell = self._memo[key] = self._text_cell(value, style)
        return f'<c r="{ref}"{cell}' if cell else ""

    def row(self, number: int, values: Sequence, kinds: str) -> str:
        parts = [f'<row r="{number}">']
        append = parts.append
        for letter, value, kind in zip(self.letters, values, kinds, strict=False):
            if value is None or value == "":
                continue
            if kind == NUMBER:
                append(f'<c r="{letter}{number}"><v>{value}</v></c>')
            elif kind == MONEY:
                append(f'<c r="{letter}{number}" s="{self.money}"><v>{value}</v></c>')
            else:
                append(self.text(f"{letter}{number}", value, self.bold if kind == BOLD else None))
        append("</row>")
        return "".join(parts)


def _sheet_parts(archive: zipfile.ZipFile) -> dict[str, str]:
    """Sheet title -> the archive member holding its XML."""
    workbook = ElementTree.fromstring(archive.read("xl/workbook.xml"))  # noqa: S314 — openpyxl's own output
    rels = ElementTree.fromstring(archive.read("xl/_rels/workbook.xml.rels"))  # noqa: S314
    targets = {r.get("Id"): r.get("Target") for r in rels.findall("rel:Relationship", _NS)}
    parts = {}
    for sheet in workbook.findall("m:sheets/m:sheet", _NS):
        target = targets[sheet.get(f"{{{_NS['r']}}}id")]
        parts[sheet.get("name")] = target.lstrip("/") if target.startswith("/") else f"xl/{target}"
    return parts


def fill_sheets(path: str | os.PathLike, sheets: Sequence[str], rows: Iterable[tuple[Sequence, str]],
                *, rows_per_sheet: int, width: int) -> int:
    """Put `rows` ((values, kinds) pairs) into `sheets` in turn, `rows_per_sheet` each, in place of their
    sample rows; returns how many rows were written. The file at `path` is replaced whole, or not at all."""
    source_rows: Iterator = iter(rows)

    def write(index: int, cells: _Cells, dst) -> int:
        count, batch = 0, []
        for values, kinds in source_rows:
            batch.append(cells.row(count + 2, values, kinds))
            count += 1
            if len(batch) == 10_000:
                dst.write("".join(batch).encode())
                batch = []
            if count >= rows_per_sheet:
                break
        dst.write("".join(batch).encode())
        if index == len(sheets) - 1 and next(source_rows, None) is not None:  # before the file is replaced
            raise ValueError(f"more rows than {len(sheets)} sheet(s) of {rows_per_sheet} hold")
        return count

    return _fill(path, sheets, width, write)


def fill_sheets_rendered(path: str | os.PathLike, sheets: Sequence[str], render: Callable[[int, _Cells], Iterable[bytes]],
                         *, width: int) -> int:
    """As fill_sheets, with each sheet's rows already sheet XML: `render(index, cells)` gives the bytes of sheet
    `index`'s rows (numbered from 2), made with `cells` (the sample row's styles: `cells.body`, `cells.money`).
    Returns how many rows were written (one `</row>` a row)."""
    def write(index: int, cells: _Cells, dst) -> int:
        count = 0
        for chunk in render(index, cells):
            count += chunk.count(b"</row>")
            dst.write(chunk)
        return count

    return _fill(path, sheets, width, write)


def _fill(path, sheets: Sequence[str], width: int, write: Callable[[int, _Cells, object], int]) -> int:
    """Rewrite the archive at `path`, each of `sheets` with `write(index, cells, member)`'s rows in place of its
    sample row; the other members copied. Replaced whole, or not at all."""
    path = os.fspath(path)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=".fill-", suffix=".xlsx")
    os.close(fd)
    written = 0
    try:
        with zipfile.ZipFile(path) as source, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=COMPRESS_LEVEL) as out:
            parts = _sheet_parts(source)
            fill = {parts[title]: i for i, title in enumerate(sheets)}
            for info in source.infolist():
                if info.filename not in fill:
                    with source.open(info) as src, out.open(info, "w") as dst:
                        shutil.copyfileobj(src, dst)
                    continue
                xml = source.read(info)
                sample = _SAMPLE_ROW.search(xml)
                if sample is None:
                    raise ValueError(f"sheet {sheets[fill[info.filename]]!r} has no sample row to fill")
                cells = _Cells({k.decode(): v.decode() for k, v in _SAMPLE_STYLE.findall(sample.group(0))}, width)
                # The (optional) dimension would need the row count before the rows: left out.
                head = _DIMENSION.sub(b"", xml[: sample.start()])
                with out.open(info.filename, "w", force_zip64=True) as dst:
                    dst.write(head)
                    written += write(fill[info.filename], cells, dst)
                    dst.write(xml[sample.end():])
        os.chmod(tmp, os.stat(path).st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return written
