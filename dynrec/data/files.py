"""Locating dataset files, with errors that say which file and which setting to fix."""

from __future__ import annotations

from pathlib import Path

from dynrec.config import DATA_DIR_ENV


class DataFileNotFoundError(FileNotFoundError):
    """A dataset file is missing; the message names the file and the variable that locates it."""


def require_file(data_dir: Path, relative: str) -> Path:
    path = Path(data_dir) / relative
    if not path.is_file():
        raise DataFileNotFoundError(
            f"dataset file not found: {path}. Set {DATA_DIR_ENV} to the folder that holds "
            f"'{relative}' (currently {data_dir})."
        )
    return path
