"""Fetch an archive (http(s):// or file:// URL), verify its sha256 and unpack it atomically.

Used by the Snakemake download rules of the paper setting (PASCAL VOC 2012 trainval tar,
Berkeley PASCAL 2011 keypoint tarball). Works offline with ``file://`` URLs (the tests)."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from ..errors import DatasetError
from ..io import atomic_path

log = logging.getLogger(__name__)


def sha256sum(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            b = fh.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def _copy_with_progress(resp, out, url: str, chunk: int = 1 << 20) -> None:
    """Copy a response to a file in ``chunk``-byte reads, with progress (bytes, rate) on the
    console and in the log."""
    from ..progress import Progress

    size = resp.headers.get("Content-Length") if getattr(resp, "headers", None) else None
    total = int(size) if size and size.isdigit() else None
    with Progress(total=total, desc=f"download {url.rsplit('/', 1)[-1]}", unit="B", unit_scale=True,
                  logger=log) as bar:
        while True:
            b = resp.read(chunk)
            if not b:
                break
            out.write(b)
            bar.update(len(b))


def fetch(url: str, dest: str | Path, sha256: str | None = None, timeout: float = 60.0) -> str:
    """Download ``url`` to ``dest`` atomically; return the file's sha256. With ``sha256``
    given, a mismatch raises DatasetError (and nothing is left at ``dest``)."""
    dest = Path(dest)
    with atomic_path(dest) as tmp:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, "wb") as out:
                _copy_with_progress(resp, out, url)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise DatasetError(f"download failed: {url}: {exc}") from None
        digest = sha256sum(tmp)
        if sha256 and digest.lower() != sha256.lower():
            raise DatasetError(f"checksum mismatch for {url}: expected sha256 {sha256}, got {digest}")
    if not sha256:
        log.warning("no sha256 configured for %s; its sha256 is %s", url, digest)
    return digest


def unpack(archive: str | Path, dest_dir: str | Path) -> list[str]:
    """Unpack a tar archive (any compression) into ``dest_dir``: everything is extracted into
    a temporary sibling folder first, then each top-level entry is moved into place (replacing
    an existing entry of the same name). Members escaping the folder are refused. Returns the
    top-level names."""
    archive, dest_dir = Path(archive), Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".unpack.", dir=dest_dir))
    try:
        try:
            with tarfile.open(archive) as tf:
                try:
                    tf.extractall(tmp, filter="data")
                except TypeError:  # Python without extraction filters
                    for m in tf.getmembers():
                        if m.name.startswith("/") or ".." in Path(m.name).parts:
                            raise DatasetError(f"{archive}: unsafe member path {m.name!r}")
                    tf.extractall(tmp)
        except (tarfile.TarError, OSError) as exc:
            raise DatasetError(f"{archive}: cannot unpack ({exc})") from None
        names = sorted(os.listdir(tmp))
        for name in names:
            target = dest_dir / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
            os.replace(tmp / name, target)
        return names
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def download_archive(url: str, dest_dir: str | Path, marker: str | Path, sha256: str | None = None,
                     keep_archive: bool = False) -> dict:
    """Fetch ``url``, verify, unpack into ``dest_dir`` and write the JSON ``marker`` last
    (url, sha256, unpacked top-level names). Returns the marker's content."""
    if not url:
        raise DatasetError("no download URL configured (dataset.voc.voc_url / keypoints_url)")
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    name = Path(urllib.request.url2pathname(url.split("?")[0].rstrip("/").split("/")[-1])).name or "archive"
    archive = dest_dir / f".{name}.download"
    digest = fetch(url, archive, sha256)
    try:
        names = unpack(archive, dest_dir)
    finally:
        if not keep_archive:
            archive.unlink(missing_ok=True)
    info = {"url": url, "sha256": digest, "dest": str(dest_dir), "entries": names}
    with atomic_path(marker) as tmp:
        tmp.write_text(json.dumps(info, indent=1) + "\n")
    return info
