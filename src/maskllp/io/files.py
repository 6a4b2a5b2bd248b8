"""Reading a user's file with every failure turned into one :class:`~maskllp.errors.InputError` line.

Every reader of a text file the user names (manifest, annotation CSV / GeoJSON, config, synthetic
truth) goes through :func:`read_file_bytes` and :func:`decode_text`, so a missing file, a folder in
its place, an unreadable file and a file that is not UTF-8 give the same messages everywhere.
"""

from __future__ import annotations

import os
from pathlib import Path

from maskllp.errors import InputError


def read_file_bytes(path: str | os.PathLike[str], what: str = "file") -> bytes:
    """The bytes of ``path``; InputError "<what> not found", "is a folder, not a <what>" or
    "cannot read (...)"."""
    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InputError(path, f"{what} not found") from None
    except IsADirectoryError:
        raise InputError(path, f"is a folder, not a {what}") from None
    except OSError as e:
        raise InputError(path, f"cannot read ({e.strerror or e})") from None


def decode_text(path: str | os.PathLike[str], raw: bytes, hint: str = "") -> str:
    """``raw`` decoded as UTF-8 (a byte-order mark is dropped); InputError naming the first bad byte,
    followed by ``hint`` (e.g. "; save the CSV as UTF-8")."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(path, f"not UTF-8 text (byte {e.start}){hint}") from None


def read_text_file(path: str | os.PathLike[str], what: str = "file", hint: str = "") -> str:
    """:func:`read_file_bytes` then :func:`decode_text`."""
    return decode_text(path, read_file_bytes(path, what), hint)


def read_csv_rows(path: str | os.PathLike[str], required: tuple[str, ...],
                  what: str = "CSV file") -> list[tuple[int, dict[str, str]]]:
    """(line number, row) of each non-empty row of a CSV with a header; InputError when the file
    cannot be read, a ``required`` column is missing, or there is no row."""
    import csv
    import io

    text = read_text_file(path, what, "; save the CSV as UTF-8")
    try:
        reader = csv.DictReader(io.StringIO(text))
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in required if c not in header]
        if missing:
            raise InputError(path, f"missing column(s) {', '.join(missing)} "
                                   f"(header: {', '.join(header) or 'none'})")
        reader.fieldnames = header
        rows = [(reader.line_num, {k: (v or "") for k, v in row.items() if k is not None})
                for row in reader if any((v or "").strip() for v in row.values() if isinstance(v, str))]
    except csv.Error as e:
        raise InputError(path, f"not a readable CSV ({e})") from None
    if not rows:
        raise InputError(path, "no rows below the header")
    return rows
