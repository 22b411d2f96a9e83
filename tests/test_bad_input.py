"""Every bad input we know of, through the CLI and the library: one clear line, a
non-zero exit, a specific exception type, no traceback, nothing half-written.

docs/errors.md lists the same cases; `test_docs_table_lists_every_case` keeps it honest.
"""

import gzip
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from encluster import EncodingClusterer, load_dataset
from encluster.cli import main
from encluster.data import BUNDLED_DIR, MNIST
from encluster.errors import ConfigError, DataError, ModelError, RunDirError
from encluster.idx import read_idx

DOCS = Path(__file__).parent.parent / "docs" / "errors.md"
QUICK = ["--preset", "original", "--epochs", "1", "--n-init", "1", "--no-plots", "-q"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A small model saved the way `encluster run` saves it (64 input features)."""
    X = load_dataset("digits", max_samples=200, scale=False).X
    folder = tmp_path_factory.mktemp("model")
    EncodingClusterer(4, preset="original", hidden=(16,), code_size=2, epochs=1, n_init=1, random_state=0).fit(X).save(folder)
    return folder


def _npy(path, array):
    np.save(path, array)
    return path


def _idx_folder(root, damage):
    """A Fashion-MNIST-shaped folder (MNIST's files under its names) with one file damaged."""
    folder = root / "fashion-mnist"
    folder.mkdir(parents=True)
    for name, *_ in MNIST.files.values():
        shutil.copy(BUNDLED_DIR / "mnist" / name, folder / name)
    target = folder / "train-images-idx3-ubyte.gz"
    damage(target)
    return root


def _truncate(path):
    path.write_bytes(path.read_bytes()[:5000])


def _images(folder, sizes, extra=None):
    folder.mkdir()
    for i, size in enumerate(sizes):
        Image.fromarray(np.zeros(size[::-1], dtype=np.uint8)).save(folder / f"{i}.png")
    if extra:
        (folder / extra).write_text("not an image")
    return folder


def _edit_model(model_dir, tmp, edit):
    copy = tmp / "model"
    shutil.copytree(model_dir, copy)
    edit(copy)
    return copy


def _set_meta(key_path, value):
    def edit(folder):
        meta = json.loads((folder / "model.json").read_text())
        node = meta
        for key in key_path[:-1]:
            node = node[key]
        node[key_path[-1]] = value
        (folder / "model.json").write_text(json.dumps(meta))
    return edit


def _consistent_edit(key_path, value):
    """Edit model.json *and* re-sign the weights to match: only the shape check can catch it."""
    def edit(folder):
        import hashlib

        from safetensors.torch import load_file, save_file

        _set_meta(key_path, value)(folder)
        meta = json.loads((folder / "model.json").read_text())
        meta.pop("weights_sha256")
        save_file(load_file(folder / "model.safetensors"), folder / "model.safetensors",
                  metadata={"encluster": json.dumps(meta, sort_keys=True)})
        meta["weights_sha256"] = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
        (folder / "model.json").write_text(json.dumps(meta))
    return edit


def _consistent_tensor_edit(name, change):
    """Change one array of model.safetensors with `change` and re-sign both files to match: only a check
    of the numbers themselves can catch it."""
    def edit(folder):
        import hashlib

        from safetensors import safe_open
        from safetensors.torch import load_file, save_file

        weights = folder / "model.safetensors"
        with safe_open(weights, framework="pt") as handle:
            metadata = handle.metadata()
        tensors = load_file(weights)
        tensors[name] = change(tensors[name].clone())
        save_file(tensors, weights, metadata=metadata)
        meta = json.loads((folder / "model.json").read_text())
        meta["weights_sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
        (folder / "model.json").write_text(json.dumps(meta))
    return edit


def _nan_at_first(tensor):
    tensor.view(-1)[0] = float("nan")
    return tensor


def _umap_model(folder):
    """A small model of method umap (a mixture on a UMAP embedding; no network), as `save` writes it."""
    X = load_dataset("digits", max_samples=100, scale=False).X
    EncodingClusterer(3, preset="umap", umap_layouts=1, n_init=1, random_state=0).fit(X).save(folder)
    return folder


def _named_model(folder):
    """A model fitted on a table with named columns a, b, c."""
    X = np.random.default_rng(0).normal(size=(60, 3))
    EncodingClusterer(2, preset="original", hidden=(8,), code_size=2, epochs=1, n_init=1, random_state=0).fit(
        X, feature_names=["a", "b", "c"]).save(folder)
    return folder


def _image_model(folder):
    """A model fitted on 8x8 images."""
    X = load_dataset("digits", max_samples=100, scale=False).X
    EncodingClusterer(2, preset="original", hidden=(8,), code_size=2, epochs=1, n_init=1, random_state=0).fit(
        X, image_shape=(8, 8)).save(folder)
    return folder


def _not_a_run(folder):
    folder.mkdir()
    (folder / "thesis.txt").write_text("important")
    return folder


def _flip_a_pixel(path):
    """The same IDX file with one pixel changed: a valid header, a wrong checksum."""
    content = bytearray(gzip.decompress(path.read_bytes()))
    content[1000] ^= 0xFF
    path.write_bytes(gzip.compress(bytes(content)))


def _flip_last_byte(folder):
    data = bytearray((folder / "model.safetensors").read_bytes())
    data[-1] ^= 1
    (folder / "model.safetensors").write_bytes(bytes(data))


# id -> (CLI arguments built in a temp folder, exit code, message fragment)
CLI_CASES = {
    "missing-file": (lambda t, m: ["run", "--dataset", t / "missing.npy"], 1, "no such file or folder"),
    "unsupported-type": (lambda t, m: ["run", "--dataset", _write(t / "data.txt", b"1 2")], 1, "unsupported file type"),
    "unreadable-npy": (lambda t, m: ["run", "--dataset", _write(t / "x.npy", b"garbage")], 1, "not a valid .npy array"),
    "object-array": (lambda t, m: ["run", "--dataset", _pickled(t / "o.npy")], 1, "cannot be loaded without pickle"),
    "npz-without-X": (lambda t, m: ["run", "--dataset", _npz(t / "a.npz", data=np.zeros((3, 2)))], 1,
                      "expected one named X"),
    "truncated-gz": (lambda t, m: ["run", "--dataset", "fashion-mnist", "--data-dir", _idx_folder(t, _truncate)], 1,
                     "cannot be read"),
    "corrupted-idx": (lambda t, m: ["run", "--dataset", "fashion-mnist", "--data-dir",
                                    _idx_folder(t, _flip_a_pixel)],
                      1, "md5 of the uncompressed content"),
    "label-count": (lambda t, m: ["run", "--dataset", _npz(t / "a.npz", X=np.zeros((10, 2)), y=np.arange(3))], 1,
                    "3 labels for 10 samples"),
    "nan-values": (lambda t, m: ["run", "--dataset", _npy(t / "n.npy", np.array([[0.1, np.nan], [0.2, 0.3]]))], 1,
                   "NaN or infinite values"),
    "infinite-values": (lambda t, m: ["run", "--dataset", _npy(t / "i.npy", np.array([[0.1, np.inf], [0.2, 0.3]]))],
                        1, "NaN or infinite values"),
    "empty-data": (lambda t, m: ["run", "--dataset", _npy(t / "e.npy", np.zeros((0, 4)))], 1, "0 sample(s) (shape=(0, 4))"),
    "single-sample": (lambda t, m: ["run", "--dataset", _npy(t / "s.npy", np.ones((1, 4)) / 2)], 1,
                      "n_clusters=10 is more than the 1 samples"),
    "too-many-clusters": (lambda t, m: ["run", "--dataset", _npy(t / "f.npy", np.eye(5)), "--clusters", "6"], 1,
                          "more than the 5 samples"),
    "zero-clusters": (lambda t, m: ["run", "--clusters", "0"], 2, "'0': expected an integer >= 1 or auto"),
    "clusters-not-a-number": (lambda t, m: ["run", "--clusters", "many"], 2, "'many': expected an integer >= 1 or auto"),
    "corruption-not-a-fraction": (lambda t, m: ["run", "--corruption", "1"], 2, "'1': expected a number in [0, 1)"),
    "too-few-for-umap": (lambda t, m: ["run", "--dataset", _npy(t / "two.npy", np.eye(2)), "--clusters", "2"], 1,
                         "needs at least 3 samples"),
    "constant-data": (lambda t, m: ["run", "--dataset", _npy(t / "z.npy", np.zeros((20, 4))), "--clusters", "3"], 1,
                      "all 20 samples are identical"),
    "csv-non-numeric": (lambda t, m: ["run", "--dataset", _write(t / "c.csv", b"a,b\n1,2\n3,x\n")], 1,
                        "is not a number"),
    "csv-ragged": (lambda t, m: ["run", "--dataset", _write(t / "c.csv", b"a,b\n1,2\n3\n")], 1,
                   "has 1 fields, expected 2"),
    "images-mixed-sizes": (lambda t, m: ["run", "--dataset", _images(t / "img", [(4, 4), (5, 4)])], 1,
                           "different sizes"),
    "images-non-image-file": (lambda t, m: ["run", "--dataset", _images(t / "img", [(4, 4)], "notes.txt")], 1,
                              "not an image file"),
    "model-missing-file": (lambda t, m: ["predict", "--model", _edit_model(m, t, lambda f: (f / "model.json").unlink()),
                                         _npy(t / "x.npy", np.zeros((2, 64))), "--out", t / "o.npy"], 1,
                           "model.json is missing"),
    "model-other-version": (lambda t, m: ["predict", "--model", _edit_model(m, t, _set_meta(["format_version"], 7)),
                                          _npy(t / "x.npy", np.zeros((2, 64))), "--out", t / "o.npy"], 1,
                            "model format version 7"),
    "model-json-edited": (lambda t, m: ["predict", "--model", _edit_model(m, t, _set_meta(["seed"], 99)),
                                        _npy(t / "x.npy", np.zeros((2, 64))), "--out", t / "o.npy"], 1,
                          "does not match the description"),
    "model-shape-mismatch": (lambda t, m: ["predict", "--model",
                                           _edit_model(m, t, _consistent_edit(["autoencoder", "hidden"], [17])),
                                           _npy(t / "x.npy", np.zeros((2, 64))), "--out", t / "o.npy"], 1,
                             "shapes do not match"),
    "model-tampered-weights": (lambda t, m: ["predict", "--model", _edit_model(m, t, _flip_last_byte),
                                             _npy(t / "x.npy", np.zeros((2, 64))), "--out", t / "o.npy"], 1,
                               "does not match model.json"),
    "width-mismatch": (lambda t, m: ["predict", "--model", m, _npy(t / "x.npy", np.zeros((2, 5))), "--out",
                                     t / "o.npy"], 1, "has 5 features, but EncodingClusterer is expecting 64"),
    "predict-out-exists": (lambda t, m: ["predict", "--model", m, _npy(t / "x.npy", np.zeros((2, 64))), "--out",
                                         _write(t / "o.npy", b"keep")], 1, "exists already"),
    "run-out-exists": (lambda t, m: ["run", *QUICK, "--dataset", "digits", "--out", _mkdir(t / "old")], 1,
                       "exists already"),
    "run-out-unwritable": (lambda t, m: ["run", *QUICK, "--dataset", "digits", "--out",
                                         _write(t / "file", b"x") / "run"], 1, "cannot write"),
    "unknown-config-key": (lambda t, m: ["run", "--config", _write(t / "c.json", b'{"run": {"out": "/etc"}}')], 1,
                           "unknown settings ['out']"),
    "resume-nothing": (lambda t, m: ["run", "--resume", t / "never-ran"], 1, "no interrupted run"),
    "wrong-flag": (lambda t, m: ["run", "--clusterz", "3"], 2, "unrecognized arguments"),
    "csv-decimal-comma": (lambda t, m: ["run", "--dataset", _write(t / "c.csv", b"a;b\n0,5;1,5\n0,7;2,5\n")], 1,
                          "is written with a decimal comma"),
    "csv-duplicate-names": (lambda t, m: ["run", "--dataset", _write(t / "c.csv", b"a,b,a\n1,2,3\n4,5,6\n")], 1,
                            "column names ['a'] stand more than once"),
    "csv-missing-label": (lambda t, m: ["run", "--dataset", _write(t / "c.csv", b"a,b,kind\n1,2,x\n3,4,\n5,6,y\n"),
                                        "--label-column", "kind"], 1, "line 3: the label is missing"),
    "nan-labels": (lambda t, m: ["run", "--dataset", _npz(t / "a.npz", X=np.eye(4), y=np.array([0, 1, np.nan, 1]))],
                   1, "1 of 4 labels are NaN"),
    "clusters-per-sample": (lambda t, m: ["run", "--dataset", _npy(t / "r.npy", np.eye(20)), "--clusters", "15"], 1,
                            "too few to find groups in; use at most 10 clusters"),
    "training-diverged": (lambda t, m: ["run", "--dataset", "digits", "--max-samples", "200", "--epochs", "1",
                                        "--learning-rate", "1e30", "--no-plots", "-q", "--out", t / "r"], 1,
                          "the training diverged"),
    "network-too-large": (lambda t, m: ["run", *QUICK, "--dataset", "digits", "--hidden", "100000000", "--out",
                                        t / "r"], 1, "lower hidden (--hidden)"),
    "force-not-a-run": (lambda t, m: ["run", *QUICK, "--dataset", "digits", "--out", _not_a_run(t / "thesis"),
                                      "--force"], 1, "is not an encluster run (it holds thesis.txt)"),
    "force-a-file": (lambda t, m: ["run", *QUICK, "--dataset", "digits", "--out", _write(t / "notes", b"x"),
                                   "--force"], 1, "is a file, not an encluster run"),
    "out-names-no-folder": (lambda t, m: ["run", *QUICK, "--dataset", "digits", "--out", ".", "--force"], 1,
                            "names no folder of its own"),
    "resume-plain-folder": (lambda t, m: ["run", "--resume", _not_a_run(t / "plain")], 1, "is not an encluster run"),
    "predict-renamed-columns": (lambda t, m: ["predict", "--model", _named_model(t / "named"),
                                              _write(t / "x.csv", b"a,b,d\n1,2,3\n"), "--out", t / "o.csv"], 1,
                                "missing ['c']; unexpected ['d']"),
    "predict-image-shape": (lambda t, m: ["predict", "--model", _image_model(t / "images"),
                                          _npy(t / "x.npy", np.zeros((2, 16, 4))), "--out", t / "o.npy"], 1,
                            "holds images of shape (16, 4), but the model was fitted on images of shape (8, 8)"),
    "model-nan-mixture": (lambda t, m: ["predict", "--model", _edit_model(
                              _umap_model(t / "umap"), t, _consistent_tensor_edit("mixture.weights", _nan_at_first)),
                              _npy(t / "x.npy", np.zeros((2, 64))), "--out", t / "o.npy"], 1,
                          "mixture.weights holds NaN or infinite values"),
    "model-nan-fit-data": (lambda t, m: ["predict", "--model", _edit_model(
                               _umap_model(t / "umap"), t, _consistent_tensor_edit("umap.fit_data", _nan_at_first)),
                               _npy(t / "x.npy", np.zeros((2, 64))), "--out", t / "o.npy"], 1,
                           "umap.fit_data holds NaN or infinite values"),
    "model-forged-device": (lambda t, m: ["predict", "--model", _edit_model(
                                m, t, _consistent_edit(["params", "device"], "../../etc/passwd")),
                                _npy(t / "x.npy", np.zeros((2, 64))), "--out", t / "o.npy"], 1,
                            "missing or invalid entry"),
    "model-negative-neighbours": (lambda t, m: ["predict", "--model", _edit_model(
                                      _umap_model(t / "umap"), t, _consistent_edit(["umap", "n_neighbors"], -5)),
                                      _npy(t / "x.npy", np.zeros((2, 64))), "--out", t / "o.npy"], 1,
                                  "n_neighbors -5 is not positive"),
    "no-gpu": (lambda t, m: ["run", *QUICK, "--dataset", "digits", "--device", "cuda", "--out", t / "r"], 1,
               "no CUDA GPU is available"),
    "unknown-device": (lambda t, m: ["run", *QUICK, "--dataset", "digits", "--device", "tpu", "--out", t / "r"], 2,
                       "'tpu': expected a torch device: cpu, cuda or cuda:N"),
}


def _write(path, data):
    path.write_bytes(data)
    return path


def _mkdir(path):
    path.mkdir()
    (path / "metrics.json").write_text("{}")
    return path


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def _pickled(path):
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    return path


def _snapshot(folder):
    return {p: (p.stat().st_size if p.is_file() else None) for p in folder.rglob("*")}


@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_cli_bad_input(case, tmp_path, model_dir, capsys, monkeypatch):
    if case == "no-gpu":
        import torch

        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.chdir(tmp_path)
    build, code, fragment = CLI_CASES[case]
    args = [str(a) for a in build(tmp_path, model_dir)]
    before = _snapshot(tmp_path)
    with pytest.raises(SystemExit) if code == 2 else _no_raise() as exit_info:
        returned = main(args)
    actual = exit_info.value.code if code == 2 else returned
    err = capsys.readouterr().err
    assert actual == code
    assert fragment in err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ")
    assert _snapshot(tmp_path) == before, "a failed command must leave nothing behind"


class _no_raise:
    value = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# The library raises specific exception types for the same problems.
LIBRARY_CASES = [
    ("missing-file", lambda t: load_dataset(t / "missing.npy"), DataError),
    ("nan-values", lambda t: EncodingClusterer(2).fit(np.array([[np.nan, 1.0], [0.0, 1.0]])), DataError),
    ("empty-data", lambda t: EncodingClusterer(2).fit(np.zeros((0, 3))), DataError),
    ("too-many-clusters", lambda t: EncodingClusterer(5).fit(np.eye(3)), DataError),
    ("zero-clusters", lambda t: EncodingClusterer(0).fit(np.eye(3)), ConfigError),
    ("clusters-not-a-number", lambda t: EncodingClusterer("many").fit(np.eye(3)), ConfigError),
    ("too-few-for-umap", lambda t: EncodingClusterer(2, preset="umap").fit(np.eye(2)), DataError),
    ("wrong-magic", lambda t: read_idx(_write(t / "x-idx1-ubyte", b"\1\0\x08\x01\0\0\0\1\0")), DataError),
    ("label-count", lambda t: load_dataset(_npz(t / "a.npz", X=np.zeros((4, 2)), y=np.arange(2))), DataError),
    ("model-missing-file", lambda t: EncodingClusterer.load(t), ModelError),
    ("not-fitted", lambda t: EncodingClusterer().predict(np.zeros((1, 2))), AttributeError),
]


@pytest.mark.parametrize("case, call, error", LIBRARY_CASES, ids=[c[0] for c in LIBRARY_CASES])
def test_library_bad_input(case, call, error, tmp_path):
    with pytest.raises(error) as info:
        call(tmp_path)
    assert "\n" not in str(info.value)


def test_run_dir_error_is_an_os_error_too():
    assert issubclass(RunDirError, OSError) and issubclass(DataError, ValueError)


def test_docs_table_lists_every_case():
    table = DOCS.read_text()
    rows = {}
    for m in re.finditer(r"^\| `([A-Za-z0-9-]+)` \|.*$", table, re.M):
        rows.setdefault(m.group(1), []).append(m.group(0))
    for case, (_, code, fragment) in CLI_CASES.items():
        assert case in rows, f"docs/errors.md has no row for {case}"
        assert any(fragment in row and f"| {code} |" in row for row in rows[case]), \
            f"docs/errors.md has no row for {case} with exit {code} and {fragment!r}"
    for case, _, error in LIBRARY_CASES:
        assert any(error.__name__ in row or "NotFittedError" in row for row in rows.get(case, [])), \
            f"docs/errors.md has no library row for {case}"


def test_a_gzip_bomb_in_the_data_folder_is_refused_without_inflating_it(tmp_path):
    """An IDX file whose header declares 10 bytes but which inflates to 64 MB stops after the 19th byte."""
    path = tmp_path / "bomb-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(b"\0\0\x08\x01" + (10).to_bytes(4, "big") + bytes(64 << 20)))
    with pytest.raises(DataError, match="holds more than the 18 bytes its IDX header declares"):
        read_idx(path)
