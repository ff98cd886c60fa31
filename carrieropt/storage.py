"""File storage helpers: a filesystem storage whose writes are atomic, for files other processes serve."""
from __future__ import annotations

import os
import tempfile

from django.core.files.storage import FileSystemStorage


class AtomicFileSystemStorage(FileSystemStorage):
    """Writes aside and moves in place: a reader sees the previous file or the new one, never half of one.
    Saving under an existing name replaces it (as an S3 PUT does)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("allow_overwrite", True)
        super().__init__(**kwargs)

    def _save(self, name, content):
        full_path = self.path(name)  # refuses a name outside the location
        directory = os.path.dirname(full_path)
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in content.chunks():
                    out.write(chunk)
            # mkstemp makes the file private (0600); the web process may run as another user of the group.
            os.chmod(tmp, self.file_permissions_mode if self.file_permissions_mode is not None else 0o644)
            os.replace(tmp, full_path)
        except BaseException:
            os.unlink(tmp) if os.path.exists(tmp) else None
            raise
        return str(name).replace("\\", "/")
