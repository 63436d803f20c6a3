"""Zip a submission folder for upload.

The zip keeps the ``<name>/`` top level (every member is ``<name>/<D>_Domain/...``) and is written OUTSIDE
the folder it packs (a zip inside the folder would pack itself; the benchmark's own script does that).
Members are stored in sorted path order with a fixed time stamp and without recompression (NetCDF4 files
are already compressed), so packing the same folder twice gives identical bytes. Written to
``<zip>.tmp`` and moved into place.
"""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

_FIXED_DATE = (1980, 1, 1, 0, 0, 0)


def _files(folder: Path) -> list[Path]:
    files = []
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            raise ValueError(f"{path}: symbolic links are not packed; replace it with the file itself")
        if path.is_file():
            files.append(path)
    return sorted(files, key=lambda p: p.relative_to(folder).as_posix())


def package_submission(folder: str | Path, zip_path: str | Path | None = None) -> Path:
    """Zip ``folder`` (the ``<name>/`` folder) to ``zip_path`` (default ``<folder>.zip`` beside it).

    Raises ValueError when ``zip_path`` lies inside ``folder`` or the folder holds no files.
    """
    folder = Path(folder).resolve()
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: submission folder not found")
    zip_path = Path(zip_path).resolve() if zip_path is not None else folder.with_name(folder.name + ".zip")
    if zip_path.is_relative_to(folder):
        raise ValueError(f"zip path {zip_path} lies inside the folder it packs ({folder}); "
                         "write it outside, e.g. beside the folder")
    files = _files(folder)
    if not files:
        raise ValueError(f"{folder}: no files to pack")
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = zip_path.with_name(zip_path.name + ".tmp")
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for path in files:
                info = zipfile.ZipInfo(f"{folder.name}/{path.relative_to(folder).as_posix()}", _FIXED_DATE)
                info.external_attr = 0o644 << 16
                with path.open("rb") as src, zf.open(info, "w", force_zip64=True) as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
        os.replace(tmp, zip_path)
    finally:
        tmp.unlink(missing_ok=True)
    return zip_path
