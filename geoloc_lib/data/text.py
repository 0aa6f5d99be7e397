"""Reading a dataset's text files (split CSVs, query lists) with errors that name file and line."""

from __future__ import annotations

from pathlib import Path

from geoloc_lib.core.errors import DatasetError


def read_text(path: str | Path, what: str, fix: str) -> str:
    """The UTF-8 text of ``path``; a byte that is not UTF-8 is a :class:`DatasetError` naming
    the file, the line and the byte, and ``fix`` (what to do)."""
    path = Path(path)
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise DatasetError(
            f"{what} {path}, line {line}: byte 0x{data[err.start]:02X} at offset {err.start} is "
            f"not UTF-8 text; {fix}"
        ) from None


def read_name_list(path: str | Path, what: str, fix: str) -> list[str]:
    """The non-empty lines of ``path``, stripped; a line listed twice is a
    :class:`DatasetError` naming both line numbers."""
    path = Path(path)
    names: list[str] = []
    first_line: dict[str, int] = {}
    for lineno, raw in enumerate(read_text(path, what, fix).splitlines(), start=1):
        name = raw.strip()
        if not name:
            continue
        if name in first_line:
            raise DatasetError(
                f"{what} {path}, line {lineno}: {name!r} is listed again (first on line "
                f"{first_line[name]}); each query appears once: {fix}"
            )
        first_line[name] = lineno
        names.append(name)
    return names
