"""Files the commands write are staged beside their target and renamed into place, so that a
full disk, a crash or an error on the way never leaves a half-written file under the name."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Any

__all__ = ["Staged", "StagedFolder"]


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


class Staged:
    """`with Staged(path) as staged:` writes go to a temporary file in `path`'s folder, which
    becomes `path` (mode 0666 less the umask, or 0600 when `private`) when the block ends
    without an error, and is removed otherwise. `staged.file` is the open file (text, or
    bytes when `binary`); `staged.temporary` its path until then."""

    def __init__(
        self,
        path: str | Path,
        *,
        private: bool = False,
        newline: str | None = None,
        binary: bool = False,
    ):
        self.path, self.private, self.newline = Path(path), private, newline
        self.binary = binary

    def __enter__(self) -> Staged:
        try:
            fd, self.temporary = tempfile.mkstemp(
                dir=self.path.parent, prefix=f".{self.path.name}."
            )
        except OSError as exc:  # name the file asked for, not the temporary one
            raise OSError(exc.errno, exc.strerror, str(self.path)) from None
        # text or bytes by `binary`, a choice made at run time: the type says either
        self.file: IO[Any] = (
            os.fdopen(fd, "wb") if self.binary else os.fdopen(fd, "w", newline=self.newline)
        )
        return self

    def write(self, data: str | bytes) -> None:
        """Write, flush and sync: a full disk fails here, not later."""
        self.file.write(data)
        self.sync()

    def sync(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self.sync()
                os.chmod(self.temporary, 0o600 if self.private else 0o666 & ~_umask())
            self.file.close()
            if exc_type is None:
                os.replace(self.temporary, self.path)
        finally:
            if os.path.exists(self.temporary):
                os.unlink(self.temporary)


class StagedFolder:
    """`with StagedFolder(folder) as staging:` files written into `staging` (a temporary
    folder inside `folder`) replace their namesakes in `folder` when the block ends without
    an error; the staging folder is removed either way, and `folder` too when the block
    failed and it had made it."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def __enter__(self) -> Path:
        try:
            self.made = not self.folder.exists()
            self.folder.mkdir(parents=True, exist_ok=True)
            self.staging = Path(tempfile.mkdtemp(dir=self.folder, prefix=".staging-"))
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, str(self.folder)) from None
        return self.staging

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                for path in sorted(self.staging.iterdir()):
                    with path.open("rb") as f:
                        os.fsync(f.fileno())
                    os.replace(path, self.folder / path.name)
        finally:
            shutil.rmtree(self.staging, ignore_errors=True)
            if exc_type is not None and self.made:
                self.folder.rmdir()
