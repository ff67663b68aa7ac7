"""Snapshot files on the client side: where a download goes, its SHA-256
check against the server's ``x-checksum-sha256`` header, and the SHA-256
of a file about to be uploaded (sent as ``?checksum=`` so the server
restores nothing from a body that arrived different)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Optional, Union

from .errors import ChecksumMismatchError

__all__ = ["CHECKSUM_HEADER", "file_sha256", "Download"]

#: Header of a snapshot download holding the file's SHA-256 (hex).
CHECKSUM_HEADER = "x-checksum-sha256"
CHUNK = 1 << 20

PathLike = Union[str, "os.PathLike[str]"]


def file_sha256(path: PathLike) -> str:
    """SHA-256 of a file, 64 lowercase hex digits."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


class Download:
    """One download to ``path`` (a file, or a directory to put ``name``
    in): bytes go to ``<file>.part`` and are hashed; :meth:`finish` checks
    the hash and renames the file into place."""

    def __init__(self, path: PathLike, name: str) -> None:
        dest = Path(path)
        if dest.is_dir():
            dest = dest / name
        self.dest = dest
        self.tmp = dest.with_name(dest.name + ".part")
        self.h = hashlib.sha256()
        self.f = open(self.tmp, "wb")

    def write(self, chunk: bytes) -> None:
        self.h.update(chunk)
        self.f.write(chunk)

    def abort(self) -> None:
        self.f.close()
        self.tmp.unlink(missing_ok=True)

    def finish(self, expected: Optional[str]) -> Path:
        """Returns the file's path; raises ChecksumMismatchError (and
        removes the file) when ``expected`` is given and differs."""
        self.f.close()
        got = self.h.hexdigest()
        if expected and expected.strip().lower() != got:
            self.tmp.unlink(missing_ok=True)
            raise ChecksumMismatchError(
                f"{self.dest.name}: SHA-256 {got}, but the server sent {expected}")
        os.replace(self.tmp, self.dest)
        return self.dest
