"""The `encluster` command end to end, as a user runs it (a real subprocess)."""

import json
import subprocess
import sys

import numpy as np
import pytest

FAST = ["--preset", "original", "--dataset", "digits", "--max-samples", "300", "--epochs", "3", "--n-init", "2"]


def encluster(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "encluster", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "digits-run"
    result = encluster("run", *FAST, "--seed", "3", "--out", out)
    assert result.returncode == 0, result.stderr
    assert "results in" in result.stdout and "raw pixels" in result.stdout
    return out


def test_run_writes_the_run_directory(run_dir):
    names = {p.name for p in run_dir.iterdir()}
    assert {"metrics.json", "config.json", "model.safetensors", "model.json", "codes.npy", "assignments.npy",
            "codes_3d.png", "centroids.png", "confusion.png", "loss.png"} <= names
    assert not any(n.endswith(".partial") for n in names)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("dataset", "n_samples", "n_clusters", "preset", "seed", "acc", "nmi", "ari", "purity",
                "mean_cluster_purity", "train_seconds", "total_seconds", "encluster_version"):
        assert key in metrics, key
    assert metrics["n_samples"] == 300 and metrics["seed"] == 3 and metrics["dataset"] == "digits"
    # Each stage's entry is the process's peak by the stage's end: in the order run, never falling.
    peaks = metrics["peak_memory_by_stage_mb"]
    order = ["load", "train", "encode", "cluster", "confidence", "fit", "score", "save", "plot"]
    assert set(peaks) == set(order) and set(metrics["timings"]) == set(order)
    assert all(peaks[a] <= peaks[b] for a, b in zip(order, order[1:])) and peaks["plot"] <= metrics["peak_memory_mb"]
    assert set(metrics["pixels"]) == {"acc", "nmi", "ari", "purity", "mean_cluster_purity"}
    # The scores are those of the saved assignments, and of k-means on the scaled pixels, recomputed here.
    from sklearn.cluster import KMeans

    from encluster import load_dataset
    from encluster.metrics import clustering_accuracy
    from encluster.scaling import Scaler

    data = load_dataset("digits", max_samples=300, random_state=3, scale=False)
    assert metrics["acc"] == pytest.approx(clustering_accuracy(data.y, np.load(run_dir / "assignments.npy")))
    pixels = KMeans(10, n_init=10, random_state=3).fit_predict(Scaler.fit(data.X).transform(data.X))
    assert metrics["pixels"]["acc"] == pytest.approx(clustering_accuracy(data.y, pixels))
    codes, labels = np.load(run_dir / "codes.npy"), np.load(run_dir / "assignments.npy")
    assert codes.shape == (300, 3) and labels.shape == (300,)
    assert sum(metrics["cluster_sizes"]) == 300


def test_config_reruns_exactly(run_dir, tmp_path):
    result = encluster("run", "--config", run_dir / "config.json", "--out", tmp_path / "again", "-q")
    assert result.returncode == 0, result.stderr
    assert "elsewhere" not in result.stderr  # same machine, same libraries: nothing to warn of
    assert np.array_equal(np.load(run_dir / "assignments.npy"), np.load(tmp_path / "again" / "assignments.npy"))


def test_a_run_records_what_its_labels_depend_on(run_dir):
    import torch

    from encluster.provenance import LIBRARIES, cpu_name

    config = json.loads((run_dir / "config.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    model = json.loads((run_dir / "model.json").read_text())
    assert config["run"]["precision"] == "float32"  # resolved when the run started, not left to the machine
    for env in (config["environment"], metrics["environment"], model["environment"]):
        assert set(env["libraries"]) == set(LIBRARIES) and env["libraries"]["torch"] == torch.__version__
        assert env["torch_threads"] == torch.get_num_threads() and env["cpu"] == cpu_name()
        assert env["precision"] == "float32"


def test_the_cpu_is_named_with_its_generation_where_linux_gives_it():
    from encluster.provenance import describe_cpu

    block = "processor\t: {}\nvendor_id\t: AuthenticAMD\ncpu family\t: {}\nmodel\t\t: {}\nmodel name\t: AMD EPYC\n" \
            "stepping\t: 1\n"
    two_processors = block.format(0, 26, 2) + "\n" + block.format(1, 25, 17)
    assert describe_cpu(two_processors) == "AMD EPYC (family 26, model 2, stepping 1)"
    assert describe_cpu(block.format(0, 25, 17)) != describe_cpu(block.format(0, 26, 2))
    assert describe_cpu("model name\t: Some CPU\n") == "Some CPU"
    assert describe_cpu("processor\t: 0\nBogoMIPS\t: 50.00\n") is None  # e.g. some ARM kernels


def test_config_from_another_environment_warns_in_one_line(run_dir, tmp_path):
    config = json.loads((run_dir / "config.json").read_text())
    config["environment"]["libraries"]["torch"] = "1.0.0"
    config["environment"]["torch_threads"] = 64
    (tmp_path / "c.json").write_text(json.dumps(config))
    result = encluster("run", "--config", tmp_path / "c.json", "--out", tmp_path / "again", "-q")
    assert result.returncode == 0, result.stderr
    warning = [line for line in result.stderr.splitlines() if "elsewhere" in line]
    assert len(warning) == 1 and "torch 1.0.0 here" in warning[0] and "torch_threads 64 here" in warning[0]


def test_predict_with_saved_model(run_dir, tmp_path):
    from encluster import load_dataset

    d = load_dataset("digits", max_samples=300, random_state=3, scale=False)
    np.save(tmp_path / "same.npy", d.X)
    out = tmp_path / "labels.npy"
    result = encluster("predict", "--model", run_dir, tmp_path / "same.npy", "--out", out)
    assert result.returncode == 0, result.stderr
    assert np.array_equal(np.load(out), np.load(run_dir / "assignments.npy"))
    again = encluster("predict", "--model", run_dir, tmp_path / "same.npy", "--out", out)
    assert again.returncode == 1 and "--force" in again.stderr
    csv_out = tmp_path / "labels.csv"
    assert encluster("predict", "--model", run_dir, tmp_path / "same.npy", "--out", csv_out).returncode == 0
    lines = csv_out.read_text().splitlines()
    assert lines[0] == "cluster,confidence" and [line.split(",")[0] for line in lines[1:]] == [str(v) for v in np.load(out)]
    assert all(0 < float(line.split(",")[1]) <= 1 for line in lines[1:])


def test_precision_flag_reaches_training_and_is_recorded(run_dir, tmp_path):
    assert json.loads((run_dir / "metrics.json").read_text())["precision"] == "float32"  # the seed preset's
    result = encluster("run", *FAST, "--precision", "bfloat16", "--out", tmp_path / "bf16", "-q")
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "bf16" / "metrics.json").read_text())["precision"] == "bfloat16"
    assert json.loads((tmp_path / "bf16" / "config.json").read_text())["run"]["precision"] == "bfloat16"


def test_existing_out_needs_force(run_dir):
    before = (run_dir / "metrics.json").read_text()
    result = encluster("run", *FAST, "--out", run_dir)
    assert result.returncode == 1 and "exists already" in result.stderr and "--force" in result.stderr
    assert (run_dir / "metrics.json").read_text() == before


def test_datasets_lists_builtins_readably_in_80_columns():
    import os

    from encluster.data import BUNDLED_DIR

    result = subprocess.run([sys.executable, "-m", "encluster", "datasets"], capture_output=True, text=True,
                            env={**os.environ, "COLUMNS": "80"}, timeout=120)
    assert result.returncode == 0
    for name in ("mnist", "fashion-mnist", "digits"):
        assert f"{name}: " in result.stdout
    assert f"where: {BUNDLED_DIR / 'mnist'}\n" in result.stdout  # the whole path, on one line
    assert "Zalando Research" in result.stdout  # credits are not cut off
    assert all(len(line) <= 80 for line in result.stdout.splitlines() if str(BUNDLED_DIR) not in line)


@pytest.mark.parametrize("args, code, fragment", [
    (["run", "--dataset", "no/such/file.npy"], 1, "no such file or folder"),
    (["run", "--clusters", "0"], 2, "'0': expected an integer >= 1 or auto"),
    (["run", "--epochs", "many"], 2, "'many': expected an integer >= 0"),
    (["run", "--wrong-flag"], 2, "unrecognized arguments: --wrong-flag"),
    (["run", "--preset", "nope"], 2, "'nope': expected one of dec, default"),
    (["run", "--precision", "half"], 2, "'half': expected one of auto, float32, bfloat16"),
    (["predict", "--model", "no-such-run", "x.npy", "--out", "y.npy"], 1, "not a model folder"),
])
def test_bad_invocations_fail_with_one_line(args, code, fragment, tmp_path):
    result = encluster(*args, cwd=tmp_path)
    assert result.returncode == code
    assert fragment in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_bad_data_leaves_no_run_directory(tmp_path):
    np.save(tmp_path / "nan.npy", np.array([[0.1, np.nan], [0.2, 0.3]]))
    result = encluster("run", "--dataset", tmp_path / "nan.npy", "--out", tmp_path / "out", "-q")
    assert result.returncode == 1 and "NaN" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["nan.npy"]


def test_more_clusters_than_samples(tmp_path):
    np.save(tmp_path / "few.npy", np.random.default_rng(0).uniform(size=(5, 3)))
    result = encluster("run", "--dataset", tmp_path / "few.npy", "--clusters", "6", "--out", tmp_path / "o", "-q")
    assert result.returncode == 1 and "more than the 5 samples" in result.stderr


def test_non_image_data_without_labels(tmp_path):
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(c, 0.1, size=(50, 6)) for c in (0, 3, 6)])
    np.save(tmp_path / "tab.npy", X)
    result = encluster("run", "--dataset", tmp_path / "tab.npy", "--clusters", "3", "--epochs", "3",
                       "--out", tmp_path / "o")
    assert result.returncode == 0, result.stderr
    assert "no labels" in result.stdout
    kept = json.loads((tmp_path / "o" / "metrics.json").read_text())["layout_agreement"]["kept"]
    assert f"UMAP laid out 5 times, kept layout {kept}" in " ".join(result.stdout.split())  # 150 rows: five layouts
    names = {p.name for p in (tmp_path / "o").iterdir()}
    assert "centroids.png" not in names and "codes_3d.png" in names
    assert json.loads((tmp_path / "o" / "metrics.json").read_text())["acc"] is None


def test_predict_leaves_out_the_label_column_the_run_was_trained_with(tmp_path):
    from encluster import load_dataset

    d = load_dataset("digits", max_samples=120, random_state=0, scale=False)
    header = ",".join([f"p{j}" for j in range(d.X.shape[1])] + ["digit"])
    rows = [",".join(map(str, [*x.astype(int), f"d{t}"])) for x, t in zip(d.X, d.y)]
    (tmp_path / "train.csv").write_text("\n".join([header, *rows]) + "\n")
    run = tmp_path / "run"
    result = encluster("run", "--preset", "original", "--epochs", "3", "--n-init", "2", "--dataset", tmp_path / "train.csv",
                       "--label-column", "digit", "--out", run, "-q")
    assert result.returncode == 0, result.stderr
    out = tmp_path / "labels.npy"
    result = encluster("predict", "--model", run, tmp_path / "train.csv", "--out", out)
    assert result.returncode == 0, result.stderr
    assert "'digit'" in result.stdout
    assert np.array_equal(np.load(out), np.load(run / "assignments.npy"))
