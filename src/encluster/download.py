"""Fetching data set files from public mirrors into the user's cache.

A file is only ever moved into the cache after its uncompressed content matched the
pinned sha256, so a corrupted or tampered download is never used, not even later.
Mirrors are tried in order; `ENCLUSTER_MIRROR` puts one of the user's own in front
(an institutional mirror, or a local server in tests) and `ENCLUSTER_OFFLINE=1`
forbids the network altogether.
"""

import hashlib
import logging
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

from .atomic import atomic_write
from .errors import ChecksumError, DataError, OfflineError
from .idx import read_bytes

log = logging.getLogger(__name__)

# A socket read that waits longer than this gives up; a whole file that takes longer than
# DEADLINE_SECONDS (a server that trickles) too, so a bad mirror can never hang a run.
TIMEOUT_SECONDS = 30
DEADLINE_SECONDS = 600
CHUNK_BYTES = 1 << 20
# A compressed file is at most this much larger than its content (deflate's stored blocks and
# the gzip header); anything past it is not the file we pinned, so the download stops there.
SIZE_MARGIN_BYTES = 1 << 16


def cache_dir():
    """The user cache directory for downloaded data (XDG convention)."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "encluster"


def is_offline():
    return os.environ.get("ENCLUSTER_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def mirrors_for(default_mirrors):
    """The mirrors to try: the user's `ENCLUSTER_MIRROR` first, then the defaults."""
    extra = os.environ.get("ENCLUSTER_MIRROR", "").strip()
    return ([extra] if extra else []) + list(default_mirrors)


def fetch(filename, sha256, mirrors, target_dir, *, max_bytes):
    """Download `filename` from the first mirror that serves a verified copy.

    The body is streamed to a temporary file and cut off past `max_bytes` (a little above
    the expected file), past `DEADLINE_SECONDS`, or after `TIMEOUT_SECONDS` without data;
    nothing is kept unless the content's sha256 matches. Returns the path of the verified
    file in `target_dir`. Raises `OfflineError` when the network is forbidden or no mirror
    answered in time, `ChecksumError` when every copy that arrived was wrong or too large.
    """
    target_dir = Path(target_dir)
    target = target_dir / filename
    if is_offline():
        raise OfflineError(f"{filename} is not on disk and ENCLUSTER_OFFLINE is set")
    target_dir.mkdir(parents=True, exist_ok=True)
    failures = []
    corrupted = False
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + filename
        log.info("downloading %s", url)


        def download(tmp, url=url):
            _stream(url, tmp, max_bytes)
            verify_sha256(tmp, sha256, shown_as=url)

        try:
            # Keep the real suffix so the content is read (gunzipped or not) like the final file.
            return atomic_write(target, download, suffix=Path(filename).suffix)
        except ChecksumError as exc:
            corrupted = True
            failures.append(str(exc))
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            failures.append(f"{url}: {getattr(exc, 'reason', exc)}")
    message = f"could not download a verified {filename} ({'; '.join(failures)})"
    raise (ChecksumError if corrupted else OfflineError)(message)


def _stream(url, path, max_bytes):
    """Copy the body at `url` into `path`, refusing more than `max_bytes` or a body that takes too long."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    with open(path, "wb") as out, urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as resp:
        declared = resp.headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            raise ChecksumError(f"{url}: declares {int(declared):,} bytes, more than the {max_bytes:,} expected; "
                                "rejected")
        received = 0
        while chunk := resp.read1(min(CHUNK_BYTES, max_bytes + 1 - received)):  # what has arrived, so slow bodies are timed
            received += len(chunk)
            if received > max_bytes:
                raise ChecksumError(f"{url}: sent more than the {max_bytes:,} bytes expected; rejected")
            if time.monotonic() > deadline:
                raise TimeoutError(f"took longer than {DEADLINE_SECONDS} s")
            out.write(chunk)


def verify_sha256(path, expected, shown_as=None):
    """Check the sha256 of a file's uncompressed content (gunzipped when it ends in .gz)."""
    shown_as = shown_as or str(path)
    try:
        data = read_bytes(path)
    except DataError as exc:
        raise ChecksumError(f"{shown_as}: not a valid file ({exc})") from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise ChecksumError(f"{shown_as}: sha256 of the content is {actual}, expected {expected}; rejected")


def download_set(name, files, default_mirrors):
    """Fetch every missing file of the built-in data set `name` into the cache; return its folder.

    files : dict of role -> (file name, md5, sha256 and size in bytes of the uncompressed content)
    """
    target = cache_dir() / name
    names = [f[0] for f in files.values()]
    try:
        for filename, _, sha256, size in files.values():
            if not (target / filename).is_file():
                fetch(filename, sha256, mirrors_for(default_mirrors), target, max_bytes=size + SIZE_MARGIN_BYTES)
    except OfflineError as exc:
        raise OfflineError(
            f"{name} is not on disk and cannot be downloaded ({exc}); put {', '.join(names)} "
            f"into {target} or a folder given by --data-dir or ENCLUSTER_DATA"
        ) from None
    return target
