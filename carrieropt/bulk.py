"""Fast multi-row inserts: COPY on PostgreSQL, executemany elsewhere. Rows are tuples in `columns` order."""
from __future__ import annotations

from collections.abc import Iterable, Sequence

from django.db import connection

# COPY's text format: what psycopg escapes in a value (a tab or newline would end the field or the row).
_COPY_ESCAPES = str.maketrans({"\b": "\\b", "\t": "\\t", "\n": "\\n", "\v": "\\v", "\f": "\\f",
                               "\r": "\\r", "\\": "\\\\"})
# Lines of text given to COPY at once.
_TEXT_CHUNK = 20_000


def rows_insert(*, table: str, columns: Sequence[str], rows: Iterable[tuple], chunk: int = 5000) -> int:
    """Insert rows with the fewest round trips the backend allows; runs in the caller's transaction."""
    count = 0
    quoted = ", ".join(connection.ops.quote_name(c) for c in columns)
    name = connection.ops.quote_name(table)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Names come from model metadata, never from input.
            with cursor.cursor.copy(f"COPY {name} ({quoted}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
                    count += 1
            return count
        sql = f"INSERT INTO {name} ({quoted}) VALUES ({', '.join(['%s'] * len(columns))})"  # noqa: S608 — names from model metadata
        batch = []
        for row in rows:
            batch.append(row)
            if len(batch) >= chunk:
                cursor.executemany(sql, batch)
                count += len(batch)
                batch = []
        if batch:
            cursor.executemany(sql, batch)
            count += len(batch)
    return count


def copy_text(value) -> str:
    """One value as a field of COPY's text format (what psycopg's write_row writes): NULL is \\N, booleans t/f,
    text escaped; numbers and money strings as they are."""
    if value is None:
        return "\\N"
    if value is True:
        return "t"
    if value is False:
        return "f"
    if isinstance(value, str):
        return str.translate(value, _COPY_ESCAPES)
    return str(value)


def text_rows_insert(*, table: str, columns: Sequence[str], lines: Iterable[str]) -> int:
    """COPY rows already in COPY's text format (copy_text fields, tab-separated, each line ending in a newline);
    PostgreSQL only, in the caller's transaction."""
    count = 0
    quoted = ", ".join(connection.ops.quote_name(c) for c in columns)
    name = connection.ops.quote_name(table)
    with connection.cursor() as cursor, cursor.cursor.copy(f"COPY {name} ({quoted}) FROM STDIN") as copy:
        batch = []
        for line in lines:
            batch.append(line)
            if len(batch) >= _TEXT_CHUNK:
                copy.write("".join(batch))
                count += len(batch)
                batch = []
        if batch:
            copy.write("".join(batch))
            count += len(batch)
    return count
