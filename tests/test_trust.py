"""Trust, round three: nothing a run computed is lost, `--force` never deletes a user's files, and
awkward requests end in one line (each case through the CLI, as a user meets it)."""

import json
import os
import stat
import subprocess
import sys

import numpy as np
import pytest

# Small and quick for every preset: 120 digits, one pretraining epoch, a few self-labelling steps.
TINY = ["--dataset", "digits", "--max-samples", "120", "--epochs", "1", "--selflabel-steps", "20",
        "--umap-layouts", "2", "--refine-epochs", "1", "-q"]


def encluster(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "encluster", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def one_line_error(result, *words):
    """The command failed with one line on stderr, naming each of `words`, and no traceback."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])


@pytest.mark.parametrize("preset", ["default", "original", "n2d", "dec", "idec", "umap"])
@pytest.mark.parametrize("k", [1, 2])
def test_one_or_two_clusters_write_a_complete_run_and_report(tmp_path, preset, k):
    out = tmp_path / "run"
    result = encluster("run", *TINY, "--preset", preset, "--clusters", k, "--out", out)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_clusters"] == k and "drawing_failed" not in metrics
    labels = np.load(out / "assignments.npy")
    assert labels.shape == (120,) and set(np.unique(labels)) <= set(range(k))
    assert (out / "report.html").stat().st_size > 0 and (out / "codes_3d.png").is_file()
    os.remove(out / "report.html")
    again = encluster("report", out)
    assert again.returncode == 0, again.stderr
    assert (out / "report.html").stat().st_size > 0


def test_a_failing_figure_costs_only_the_figure(tmp_path, monkeypatch, caplog):
    from encluster import plots
    from encluster.runs import RunConfig, run_experiment

    def broken(*args, **kwargs):
        raise RuntimeError("the plotting library broke")

    monkeypatch.setattr(plots, "code_scatter", broken)
    config = RunConfig(dataset="digits", max_samples=150, preset="original", epochs=1, n_init=1)
    metrics, run_dir = run_experiment(config, tmp_path / "run")
    for name in ("model.safetensors", "model.json", "assignments.npy", "codes.npy", "metrics.json", "report.html"):
        assert (run_dir / name).is_file(), name
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert "the plotting library broke" in saved["drawing_failed"]["the figures"]
    assert saved["acc"] == metrics["acc"] > 0
    assert any("could not be drawn" in r.getMessage() and "encluster report" in r.getMessage()
               for r in caplog.records)


@pytest.fixture
def table(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.random.default_rng(1).normal(size=(90, 4)))
    return path


def test_force_does_not_delete_a_users_folder(tmp_path, table):
    folder = tmp_path / "thesis"
    folder.mkdir()
    (folder / "thesis.txt").write_text("important")
    result = encluster("run", "--dataset", table, "--clusters", 3, "--out", folder, "--force", "-q")
    one_line_error(result, "not an encluster run", "thesis.txt", "choose another --out")
    assert (folder / "thesis.txt").read_text() == "important"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thesis", "x.npy"]


def test_force_does_not_replace_a_file(tmp_path, table):
    target = tmp_path / "notes"
    target.write_text("keep me")
    result = encluster("run", "--dataset", table, "--clusters", 3, "--out", target, "--force", "-q")
    one_line_error(result, "is a file")
    assert target.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes", "x.npy"]  # no hidden .replaced or .partial


def test_force_replaces_an_earlier_run_and_leaves_nothing_beside_it(tmp_path, table):
    out = tmp_path / "run"
    assert encluster("run", "--dataset", table, "--clusters", 3, "--out", out, "-q").returncode == 0
    (out / "codes.npy").unlink()  # the new run must write its own
    result = encluster("run", "--dataset", table, "--clusters", 2, "--out", out, "--force", "-q")
    assert result.returncode == 0, result.stderr
    assert json.loads((out / "metrics.json").read_text())["n_clusters"] == 2 and (out / "codes.npy").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "x.npy"]


@pytest.mark.parametrize("name", ["", ".", "/", ".."])
def test_out_that_names_no_folder_of_its_own_is_refused(tmp_path, table, name):
    before = sorted(p.name for p in tmp_path.iterdir())
    one_line_error(encluster("run", "--dataset", table, "--clusters", 3, "--out", name, "--force", "-q",
                             cwd=tmp_path), "names no folder of its own")
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_resume_of_a_plain_folder_says_it_is_not_a_run(tmp_path):
    (tmp_path / "plain").mkdir()
    plain = encluster("run", "--resume", tmp_path / "plain")
    one_line_error(plain, "is not an encluster run")
    assert "complete already" not in plain.stderr and list((tmp_path / "plain").iterdir()) == []
    absent = encluster("run", "--resume", tmp_path / "absent")
    one_line_error(absent, "does not exist")
    assert not (tmp_path / "absent").exists()


def test_every_file_of_a_run_gets_the_same_permissions(tmp_path, table):
    out = tmp_path / "run"
    previous = os.umask(0o022)
    try:
        assert encluster("run", "--dataset", table, "--clusters", 3, "--out", out, "-q").returncode == 0
    finally:
        os.umask(previous)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()}
    assert set(modes.values()) == {0o644}, modes


def _write_table(path, X, names, *, delimiter=",", trailing=""):
    lines = [delimiter.join(names) + trailing] if names else []
    lines += [delimiter.join(repr(float(v)) for v in row) + trailing for row in X]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def table_run(tmp_path_factory):
    """A run on a CSV with a header: three groups in four columns of very different scales."""
    folder = tmp_path_factory.mktemp("table")
    rng = np.random.default_rng(2)
    X = np.vstack([rng.normal(c, 1, size=(50, 4)) for c in (0, 4, 8)]) * [1, 10, 100, 1000]
    train = _write_table(folder / "train.csv", X, ["a", "b", "c", "d"])
    result = encluster("run", "--dataset", train, "--clusters", 3, "--no-plots", "--no-report", "--out",
                       folder / "run", "-q")
    assert result.returncode == 0, result.stderr
    return folder, X


def test_predict_takes_a_tables_columns_by_name(table_run):
    folder, X = table_run
    fitted = np.load(folder / "run" / "assignments.npy")
    assert len(np.unique(fitted)) == 3
    order = [3, 1, 0, 2]  # d, b, a, c: every column moves
    reordered = _write_table(folder / "reordered.csv", X[:, order], ["d", "b", "a", "c"])
    result = encluster("predict", "--model", folder / "run", reordered, "--out", folder / "r.npy")
    assert result.returncode == 0 and "Warning" not in result.stderr, result.stderr
    assert np.array_equal(np.load(folder / "r.npy"), fitted)
    # Without a header the columns can only be taken in order, and the command says so.
    bare = _write_table(folder / "bare.csv", X, None)
    result = encluster("predict", "--model", folder / "run", bare, "--out", folder / "b.npy")
    assert result.returncode == 0 and "no column names" in result.stdout and "Warning" not in result.stderr
    assert np.array_equal(np.load(folder / "b.npy"), fitted)
    # A renamed column is named, not guessed.
    renamed = _write_table(folder / "renamed.csv", X, ["a", "b", "c", "e"])
    one_line_error(encluster("predict", "--model", folder / "run", renamed, "--out", folder / "x.npy"),
                   "missing ['d']", "unexpected ['e']")
    extra = _write_table(folder / "extra.csv", np.hstack([X, X[:, :1]]), ["a", "b", "c", "d", "z"])
    one_line_error(encluster("predict", "--model", folder / "run", extra, "--out", folder / "x.npy"),
                   "unexpected ['z']")


def test_a_data_frames_model_takes_a_reordered_frame_and_csv_by_name(tmp_path):
    pd = pytest.importorskip("pandas")
    from encluster import EncodingClusterer

    rng = np.random.default_rng(3)
    frame = pd.DataFrame(np.vstack([rng.normal(c, 0.3, size=(40, 3)) for c in (0, 3)]) * [1, 50, 0.01],
                         columns=["x", "y", "z"])
    model = EncodingClusterer(2, random_state=4).fit(frame)
    shuffled = frame[["z", "x", "y"]]
    assert np.array_equal(model.predict(shuffled), model.labels_)
    assert np.array_equal(model.transform(shuffled), model.transform(frame))
    model.save(tmp_path / "model")
    shuffled.to_csv(tmp_path / "new.csv", index=False)
    result = encluster("predict", "--model", tmp_path / "model", tmp_path / "new.csv", "--out", tmp_path / "o.csv")
    assert result.returncode == 0 and "Warning" not in result.stderr, result.stderr
    assert np.array_equal(np.loadtxt(tmp_path / "o.csv", skiprows=1, delimiter=",", usecols=0, dtype=int), model.labels_)


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
@pytest.mark.parametrize("trailing", [False, True])
@pytest.mark.parametrize("header", [False, True])
def test_a_csv_is_read_whatever_its_separator_and_a_trailing_one(tmp_path, delimiter, trailing, header):
    from encluster.formats import load_file

    X = np.random.default_rng(5).normal(size=(7, 3)) * [1, 1e4, 1e-3]
    path = _write_table(tmp_path / "t.csv", X, ["p", "q", "r"] if header else None, delimiter=delimiter,
                        trailing=delimiter if trailing else "")
    data = load_file(path)
    assert np.array_equal(data.X, X)
    assert data.feature_names == (["p", "q", "r"] if header else None)


def test_a_filtered_data_frames_parquet_keeps_its_index_out_of_the_features(tmp_path):
    pd = pytest.importorskip("pandas")
    from encluster.formats import load_file

    frame = pd.DataFrame(np.random.default_rng(6).normal(size=(50, 3)), columns=["a", "b", "c"])
    kept = frame[frame.a > 0]
    kept.to_parquet(tmp_path / "f.parquet")
    data = load_file(tmp_path / "f.parquet")
    assert data.feature_names == ["a", "b", "c"] and np.array_equal(data.X, kept.to_numpy())
    kept.set_index("a").to_parquet(tmp_path / "named.parquet")  # a named index: row names, not a feature
    assert load_file(tmp_path / "named.parquet").feature_names == ["b", "c"]


def test_16_bit_images_keep_their_depth(tmp_path):
    from PIL import Image

    from encluster.formats import load_file

    rng = np.random.default_rng(7)
    images = [rng.integers(256, 65536, size=(6, 5)).astype(np.uint16) for _ in range(4)]
    for i, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / f"{i}.png")
    data = load_file(tmp_path)
    assert data.image_shape == (6, 5) and data.X.dtype == np.uint16
    assert np.array_equal(data.X, np.stack(images).reshape(4, -1))


def test_flags_beside_config_override_it(tmp_path, table):
    first = tmp_path / "first"
    assert encluster("run", "--dataset", table, "--clusters", 3, "--out", first, "-q").returncode == 0
    again = tmp_path / "again"
    result = encluster("run", "--config", first / "config.json", "--clusters", 5, "--no-report", "--out", again)
    assert result.returncode == 0, result.stderr
    assert "n_clusters=5 (was 3)" in result.stderr and "report=False (was True)" in result.stderr
    config = json.loads((again / "config.json").read_text())["run"]
    assert config["n_clusters"] == 5 and config["report"] is False and config["dataset"] == str(table)
    assert json.loads((again / "metrics.json").read_text())["n_clusters"] == 5
    assert not (again / "report.html").exists() and (first / "report.html").exists()


def test_auto_clusters_consider_no_more_than_half_the_samples(tmp_path, table):
    result = encluster("run", "--dataset", table, "--clusters", "auto", "--max-clusters", 100000, "--umap-layouts", 1,
                       "--no-plots", "--no-report", "--out", tmp_path / "run")
    assert result.returncode == 0, result.stderr
    assert "considers 2..45 clusters, not up to max_clusters=100000" in result.stderr
    selection = json.loads((tmp_path / "run" / "metrics.json").read_text())["cluster_selection"]
    assert sorted(map(int, selection["silhouette"])) == list(range(2, 46))


def test_self_labelling_50_images_takes_steps_in_proportion_to_them():
    from encluster import EncodingClusterer
    from encluster.stages import selflabel

    rng = np.random.default_rng(8)
    shapes = rng.random((5, 12, 12, 3))
    X = np.clip(shapes[np.arange(50) % 5] + rng.normal(0, 0.05, size=(50, 12, 12, 3)), 0, 1)
    model = EncodingClusterer(5, random_state=1, epochs=1, umap_layouts=1, selflabel="on").fit(X)
    members = model.selflabel_["sure_members"]
    assert members <= 50
    passes = model.selflabel_["passes"]  # 10 samples per cluster: auto gives the most passes
    assert passes == 300 and model.selflabel_["steps"] == np.ceil(passes * members / selflabel.BATCH_SIZE) < 6000
    # A set with more sure members than the budget passes over keeps the steps asked for.
    assert selflabel.steps_for(6000, 10_000, 100) == 6000 and selflabel.steps_for(6000, 1, 100) == 1
    assert selflabel.steps_for(6000, 128, 3) == 3
