"""The download path, against a real HTTP server on 127.0.0.1 (no internet needed)."""

import functools
import http.server
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from encluster import data as data_module
from encluster import load_dataset
from encluster.data import BUNDLED_DIR, FASHION_MNIST, MNIST
from encluster import download
from encluster.download import SIZE_MARGIN_BYTES, fetch
from encluster.errors import ChecksumError, OfflineError

SYSTEM_FASHION = Path("/usr/share/datasets/fashion-mnist")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """An HTTP server on 127.0.0.1 serving tmp_path/'www'; yields (root folder, base URL)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for var in ("ENCLUSTER_OFFLINE", "ENCLUSTER_MIRROR", "ENCLUSTER_DATA"):
        monkeypatch.delenv(var, raising=False)


def _mnist_file(role):
    return MNIST.files[role][0], MNIST.files[role][2]


def _cap(role):
    return MNIST.files[role][3] + SIZE_MARGIN_BYTES


def test_fetch_verifies_and_caches(server, tmp_path):
    root, url = server
    name, sha = _mnist_file("test_labels")
    shutil.copy(BUNDLED_DIR / "mnist" / name, root / name)
    target = fetch(name, sha, [url], tmp_path / "cache" / "mnist", max_bytes=_cap("test_labels"))
    assert target.read_bytes() == (BUNDLED_DIR / "mnist" / name).read_bytes()
    assert [p.name for p in target.parent.iterdir()] == [name]  # no temp files left behind


def test_corrupted_download_is_rejected_and_not_cached(server, tmp_path):
    root, url = server
    name, sha = _mnist_file("test_labels")
    import gzip

    payload = bytearray(gzip.decompress((BUNDLED_DIR / "mnist" / name).read_bytes()))
    payload[100] ^= 0xFF
    (root / name).write_bytes(gzip.compress(bytes(payload)))
    target_dir = tmp_path / "cache" / "mnist"
    with pytest.raises(ChecksumError, match="sha256"):
        fetch(name, sha, [url], target_dir, max_bytes=_cap("test_labels"))
    assert list(target_dir.iterdir()) == []


def test_falls_back_to_the_next_mirror(server, tmp_path):
    root, url = server
    name, sha = _mnist_file("test_labels")
    shutil.copy(BUNDLED_DIR / "mnist" / name, root / name)
    dead = "http://127.0.0.1:9/"  # the discard port: nothing listens there
    assert fetch(name, sha, [dead, url + "missing/", url], tmp_path / "c", max_bytes=_cap("test_labels")).is_file()


def test_no_mirror_reachable_is_an_offline_error(tmp_path):
    name, sha = _mnist_file("test_labels")
    with pytest.raises(OfflineError, match=name):
        fetch(name, sha, ["http://127.0.0.1:9/"], tmp_path / "c", max_bytes=_cap("test_labels"))


def test_offline_flag_forbids_network(server, tmp_path, monkeypatch):
    root, url = server
    name, sha = _mnist_file("test_labels")
    shutil.copy(BUNDLED_DIR / "mnist" / name, root / name)
    monkeypatch.setenv("ENCLUSTER_OFFLINE", "1")
    with pytest.raises(OfflineError, match="ENCLUSTER_OFFLINE"):
        fetch(name, sha, [url], tmp_path / "c", max_bytes=_cap("test_labels"))


def test_fashion_mnist_offline_message_names_files_and_place(monkeypatch, tmp_path):
    monkeypatch.setattr(data_module, "SYSTEM_DATA_DIRS", [])
    monkeypatch.setenv("ENCLUSTER_OFFLINE", "1")
    with pytest.raises(OfflineError) as info:
        load_dataset("fashion-mnist")
    message = str(info.value)
    assert "train-images-idx3-ubyte.gz" in message and str(tmp_path / "cache" / "encluster" / "fashion-mnist") in message
    assert "\n" not in message


@pytest.mark.skipif(not SYSTEM_FASHION.is_dir(), reason="needs Debian's dataset-fashion-mnist (installed by .ci/run)")
def test_fashion_mnist_downloads_from_mirror_into_cache(server, monkeypatch, tmp_path):
    root, url = server
    for name, *_ in FASHION_MNIST.files.values():
        shutil.copy(SYSTEM_FASHION / name, root / name)
    monkeypatch.setattr(data_module, "SYSTEM_DATA_DIRS", [])
    monkeypatch.setenv("ENCLUSTER_MIRROR", url)
    d = load_dataset("fashion-mnist", split="test", scale=False)
    assert d.X.shape == (10000, 784) and np.bincount(d.y).tolist() == [1000] * 10
    assert sorted(p.name for p in (tmp_path / "cache" / "encluster" / "fashion-mnist").iterdir()) == sorted(
        f[0] for f in FASHION_MNIST.files.values())
    # Now cached: works offline, no server needed.
    monkeypatch.setenv("ENCLUSTER_OFFLINE", "1")
    assert load_dataset("fashion-mnist", split="test", scale=False).X.shape == (10000, 784)


def test_data_dir_takes_precedence(monkeypatch, tmp_path):
    """--data-dir is searched before the cache and system folders."""
    monkeypatch.setattr(data_module, "SYSTEM_DATA_DIRS", [])
    dirs = data_module.search_dirs("fashion-mnist", tmp_path / "mine")
    assert dirs[0] == tmp_path / "mine" / "fashion-mnist" and dirs[1] == tmp_path / "mine"
    monkeypatch.setenv("ENCLUSTER_DATA", str(tmp_path / "env"))
    dirs = data_module.search_dirs("fashion-mnist", None)
    assert dirs[0] == tmp_path / "env" / "fashion-mnist"


# An IDX header declaring 10 bytes of data, then 256 MB of zeros: 250 kB on the wire.
BOMB = __import__("gzip").compress(b"\0\0\x08\x01" + (10).to_bytes(4, "big") + bytes(256 << 20), compresslevel=9)


class _HostileHandler(http.server.BaseHTTPRequestHandler):
    """Serves what a bad mirror might: /big (an endless body, no length), /lying (a length past the
    cap), /bomb.gz (a valid gzip that inflates to 256 MB), /stall (headers, then silence), /trickle
    (a byte every 50 ms)."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        import time

        self.send_response(200)
        name = self.path.rsplit("/", 1)[-1]
        if name == "lying":
            self.send_header("Content-Length", str(10**9))
        self.end_headers()
        try:
            if name == "big":
                for _ in range(10_000):
                    self.wfile.write(b"\0" * 65536)
            elif name == "bomb.gz":
                self.wfile.write(BOMB)
            elif name == "stall":
                time.sleep(5)
            elif name == "trickle":
                for _ in range(200):
                    self.wfile.write(b"\0")
                    self.wfile.flush()
                    time.sleep(0.05)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up, as it should


@pytest.fixture
def hostile():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HostileHandler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize("path, error, fragment", [
    ("big", ChecksumError, "sent more than the 1,000,000 bytes expected"),
    ("lying", ChecksumError, "declares 1,000,000,000 bytes, more than the 1,000,000 expected"),
    ("bomb.gz", ChecksumError, "holds more than the 18 bytes its IDX header declares"),
    ("stall", OfflineError, "timed out"),
    ("trickle", OfflineError, "took longer than 2 s"),
])
def test_a_hostile_mirror_is_cut_off_with_one_line_and_leaves_nothing(hostile, tmp_path, monkeypatch, path, error,
                                                                       fragment):
    import resource

    import time

    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    monkeypatch.setattr(download, "TIMEOUT_SECONDS", 1)
    monkeypatch.setattr(download, "DEADLINE_SECONDS", 2)
    target = tmp_path / "cache"
    started = time.monotonic()
    with pytest.raises(error, match=fragment) as info:
        fetch(path, "0" * 64, [hostile], target, max_bytes=1_000_000)
    assert time.monotonic() - started < 8  # bounded, whatever the server does
    assert "\n" not in str(info.value)
    assert list(target.iterdir()) == []  # nothing half-downloaded stays in the cache
    # The bomb was not inflated (256 MB): the process grew by far less than that.
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before < 100_000  # kB
