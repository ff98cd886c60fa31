"""Big sheets written as plain sheet XML into a workbook openpyxl saved.

openpyxl makes a cell object per value; at a million SIM rows (ten million cells) that alone takes minutes.
The workbook (styles, the small sheets, charts) stays openpyxl's: each big sheet is saved holding its header
and one sample row (`sample_row`) whose cells carry the styles the rows need, and `fill_sheets` rewrites the
archive once, putting the rows where the sample row was. Text is written as inline strings, made safe the same
way everywhere: no illegal XML characters, at most Excel's cell length, and text that could be read as a
formula is marked as typed text (quote prefix).
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from xml.etree import ElementTree

from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter

from carrieropt.forked import Child, ChildFailed, fork_available

log = logging.getLogger(__name__)

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


@dataclass
class Tail:
    """The last rows of the big sheets, written by a forked child process while the caller writes the first ones.

    first: how many rows come before them (over all the sheets); rows: called in the child, the (values, kinds)
    pairs from there to the end; result: called in the child after them, its return value kept in `outcome`.
    The child reads the database on its own connection (it sees what is committed). Should it fail, the same
    rows are written here."""

    first: int
    rows: Callable[[], Iterable[tuple[Sequence, str]]]
    result: Callable[[], Any] = lambda: None
    outcome: Any = None


def _tail_write(tail: Tail, cells: _Cells, directory: str, rows_per_sheet: int) -> tuple[dict[int, tuple[str, int]], Any]:
    """Write the tail's rows as sheet XML, one file per sheet they fall in: {sheet index: (path, rows)}."""
    pieces: dict[int, tuple[str, int]] = {}
    out, sheet, batch = None, None, []
    position = tail.first
    for values, kinds in tail.rows():
        index, row = divmod(position, rows_per_sheet)
        if index != sheet:
            if out is not None:
                out.write("".join(batch).encode())
                out.close()
                batch = []
            sheet = index
            path = os.path.join(directory, f"tail-{index}.xml")
            out = open(path, "wb")  # noqa: SIM115 — closed at the sheet's end
            pieces[index] = (path, 0)
        batch.append(cells.row(row + 2, values, kinds))
        pieces[index] = (pieces[index][0], pieces[index][1] + 1)
        if len(batch) == 10_000:
            out.write("".join(batch).encode())
            batch = []
        position += 1
    if out is not None:
        out.write("".join(batch).encode())
        out.close()
    return pieces, tail.result()


def fill_sheets(path: str | os.PathLike, sheets: Sequence[str], rows: Iterable[tuple[Sequence, str]],
                *, rows_per_sheet: int, width: int, tail: Tail | None = None) -> int:
    """Put `rows` ((values, kinds) pairs) into `sheets` in turn, `rows_per_sheet` each, in place of their
    sample rows; returns how many rows were written. The file at `path` is replaced whole, or not at all.

    With a tail, `rows` are the first tail.first rows and a forked child writes the tail's meanwhile."""
    path = os.fspath(path)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=".fill-", suffix=".xlsx")
    os.close(fd)
    written = first_rows = 0
    source_rows: Iterator = iter(rows)
    pieces = None
    child = None
    try:
        with tempfile.TemporaryDirectory(dir=os.path.dirname(path) or ".", prefix=".tail-") as directory, \
                zipfile.ZipFile(path) as source, \
                zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=COMPRESS_LEVEL) as out:
            parts = _sheet_parts(source)
            fill = {parts[title]: title for title in sheets}
            order = [parts[title] for title in sheets]

            def tail_pieces(cells: _Cells) -> dict[int, tuple[str, int]]:
                nonlocal child
                if child is not None:
                    try:
                        found, tail.outcome = child.receive()
                        return found
                    except ChildFailed as exc:
                        log.warning("the report's tail rows failed in a child process; writing them here: %s", exc)
                    finally:
                        child.close()
                        child = None
                found, tail.outcome = _tail_write(tail, cells, directory, rows_per_sheet)
                return found

            for info in source.infolist():
                if info.filename not in fill:
                    with source.open(info) as src, out.open(info, "w") as dst:
                        shutil.copyfileobj(src, dst)
                    continue
                xml = source.read(info)
                sample = _SAMPLE_ROW.search(xml)
                if sample is None:
                    raise ValueError(f"sheet {fill[info.filename]!r} has no sample row to fill")
                cells = _Cells({k.decode(): v.decode() for k, v in _SAMPLE_STYLE.findall(sample.group(0))}, width)
                if tail is not None and child is None and pieces is None and fork_available():
                    child = Child(lambda send, cells=cells: send(_tail_write(tail, cells, directory, rows_per_sheet)),
                                  database="fresh")
                # The (optional) dimension would need the row count before the rows: left out.
                head = _DIMENSION.sub(b"", xml[: sample.start()])
                count, batch = 0, []
                with out.open(info.filename, "w", force_zip64=True) as dst:
                    dst.write(head)
                    for values, kinds in source_rows:
                        batch.append(cells.row(count + 2, values, kinds))
                        count += 1
                        first_rows += 1
                        if len(batch) == 10_000:
                            dst.write("".join(batch).encode())
                            batch = []
                        if count >= rows_per_sheet:
                            break
                    dst.write("".join(batch).encode())
                    if tail is not None and count < rows_per_sheet:  # the first rows ended in this sheet
                        if pieces is None:
                            if written + count != tail.first or first_rows != tail.first:
                                raise ValueError(f"{first_rows} rows came before the tail, not {tail.first}")
                            pieces = tail_pieces(cells)
                        piece = pieces.pop(order.index(info.filename), None)
                        if piece is not None:
                            with open(piece[0], "rb") as src:
                                shutil.copyfileobj(src, dst, 1 << 20)
                            count += piece[1]
                    dst.write(xml[sample.end():])
                written += count
            if tail is not None and pieces is None:
                pieces = tail_pieces(cells)
        if next(source_rows, None) is not None or pieces:
            raise ValueError(f"more rows than {len(sheets)} sheet(s) of {rows_per_sheet} hold")
        os.chmod(tmp, os.stat(path).st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        if child is not None:
            child.close()
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return written
