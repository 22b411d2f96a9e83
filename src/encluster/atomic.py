"""Writing a file so that no reader ever sees half of it: written beside its target under a
hidden ``.NAME.*.partial`` name, flushed to disk, then renamed into place in one step. A
failed or interrupted write leaves the old file (or none), never a torn one."""

import json
import os
import tempfile
from pathlib import Path


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path, write, *, suffix=""):
    """Call ``write(tmp_path)`` to fill a temporary file beside `path`, then move it onto `path`.

    Whatever `write` raises (a failed checksum, a full disk, Ctrl-C) removes the temporary
    file and leaves `path` as it was. `suffix` ends the temporary name (e.g. ``.gz`` for a
    reader that goes by the name).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial" + suffix, dir=path.parent)
    try:
        os.close(fd)
        write(Path(tmp))
        # mkstemp's 0600 (or that of a writer that recreates the file, as safetensors does) would
        # surprise whoever shares the run: the file gets the mode any other new file gets.
        os.chmod(tmp, 0o666 & ~_umask())
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_bytes(path, data):
    """Write `data` to `path` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_json(path, obj):
    """Write `obj` as indented JSON to `path` atomically."""
    return atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())
