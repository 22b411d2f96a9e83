"""The distributed code paths, run for real: 2 processes on the gloo backend on 127.0.0.1.

Each test spawns two processes that join one process group, run a piece of the library
as torchrun would, and save what they computed; the assertions run here, in the
parent, against a single-process reference.
"""

import gc
import json
import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from sklearn.cluster import KMeans

from encluster import EncodingClusterer
from encluster.stages.cluster import kmeans_sampled, lloyd
from encluster.distributed import Group, current
from encluster.models import Autoencoder, AutoencoderSpec
from encluster.runs import RunConfig, run_experiment
from encluster.training import TrainingConfig, train_autoencoder

WORLD = 2
pytestmark = pytest.mark.timeout(120)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(worker, *args):
    """Run `worker(rank, port, *args)` in 2 processes joined in one gloo group."""
    mp.spawn(_join, args=(_free_port(), worker, args), nprocs=WORLD, join=True)


def _join(rank, port, worker, args):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        worker(rank, *args)
    finally:
        gc.collect()  # as `encluster.distributed.launched`: free DDP wrappers while their group exists
        dist.destroy_process_group()


def _kmeans_cases():
    """Data sets of odd and even sizes (uneven shards), widths, cluster counts and dtypes."""
    rng = np.random.default_rng(7)
    for n, d, k, dtype in ((301, 5, 4, np.float64), (200, 3, 7, np.float32), (457, 12, 10, np.float64)):
        X = (rng.normal(size=(n, d)) + rng.integers(0, 4, size=(n, 1)) * 2).astype(dtype)
        yield X, X[rng.choice(n, k, replace=False)].astype(np.float64)


def _kmeans_worker(rank, out):
    group = current()
    for i, (X, init) in enumerate(_kmeans_cases()):
        start, stop = group.shard(len(X))
        labels, centers, inertia = lloyd(X[start:stop], init, reduce=group.all_reduce)
        np.savez(out / f"kmeans{i}-rank{rank}.npz", labels=group.all_gather_rows(labels), centers=centers,
                 inertia=inertia)


def test_distributed_kmeans_equals_scikit_learn_lloyd(tmp_path):
    _spawn(_kmeans_worker, tmp_path)
    for i, (X, init) in enumerate(_kmeans_cases()):
        reference = KMeans(len(init), init=init, n_init=1, algorithm="lloyd").fit(X)
        for rank in range(WORLD):
            got = np.load(tmp_path / f"kmeans{i}-rank{rank}.npz")
            np.testing.assert_array_equal(got["labels"], reference.labels_)
            np.testing.assert_allclose(got["centers"], reference.cluster_centers_, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(got["inertia"], reference.inertia_, rtol=1e-5)


def _sampled_worker(rank, out, X):
    labels, centers = kmeans_sampled(X, 3, n_init=2, random_state=0, max_fit_samples=60)
    np.savez(out / f"rank{rank}.npz", labels=labels, centers=centers)


def test_sampled_kmeans_across_processes_labels_every_row_by_its_nearest_centre(tmp_path, blobs):
    X, y = blobs
    _spawn(_sampled_worker, tmp_path, X)
    ranks = [np.load(tmp_path / f"rank{r}.npz") for r in range(WORLD)]
    np.testing.assert_array_equal(ranks[0]["labels"], ranks[1]["labels"])
    np.testing.assert_array_equal(ranks[0]["centers"], ranks[1]["centers"])
    distances = ((X[:, None, :] - ranks[0]["centers"][None]) ** 2).sum(axis=2)
    np.testing.assert_array_equal(ranks[0]["labels"], distances.argmin(axis=1))
    assert len(np.unique(ranks[0]["labels"])) == 3 and (np.bincount(ranks[0]["labels"]) == 60).all()


def _network(seed=0):
    spec = AutoencoderSpec(n_features=12, code_size=2, hidden=(8,), decoder_hidden=None, activation="sigmoid",
                           code_activation="sigmoid", output_activation="sigmoid", init="xavier")
    torch.manual_seed(seed)
    return Autoencoder(spec).double()


def _training_data():
    return np.random.default_rng(3).uniform(size=(96, 12))


def _config(batch_size, corruption=0.0):
    return TrainingConfig(epochs=3, batch_size=batch_size, learning_rate=1e-2, loss="bce", schedule="constant",
                          corruption=corruption, precision="float32")


def _train(batch_size, group=None, corruption=0.0):
    model = _network()
    config = _config(batch_size, corruption)
    history = train_autoencoder(model, _training_data(), config, generator=torch.Generator().manual_seed(5),
                                group=group)
    return model, history


def _training_worker(rank, out, batch_size, corruption):
    model, history = _train(batch_size, corruption=corruption)
    torch.save({"state": model.state_dict(), "history": torch.tensor(history, dtype=torch.float64)}, out / f"rank{rank}.pt")


@pytest.mark.parametrize("corruption", [0.0, 0.3])
def test_two_processes_with_half_batches_train_to_the_weights_of_one_process(tmp_path, corruption):
    # batch_size is the global batch: each of the 2 processes takes 16 rows of every
    # shuffled batch of 32, and DDP averages their gradients: one process with 32 rows.
    # Denoising masks are drawn for the global batch, so they split the same way.
    _spawn(_training_worker, tmp_path, 32, corruption)
    alone, history = _train(32, corruption=corruption)
    for rank in range(WORLD):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        for name, value in alone.state_dict().items():
            torch.testing.assert_close(got["state"][name], value, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(got["history"].numpy(), history, rtol=1e-9)
    # It did train (the weights moved from their start), so the equality means something.
    assert not torch.allclose(_network().state_dict()["encoder.0.weight"], alone.state_dict()["encoder.0.weight"])


def _resume_worker(rank, out):
    from encluster.training import Checkpoint, TrainingInterrupted

    uninterrupted, _ = _train(32)
    checkpoint = Checkpoint(out / "checkpoint.pt")
    if rank == 0:
        checkpoint.stop.set()  # Ctrl-C reaching one process only: both must stop at the same batch
    with pytest.raises(TrainingInterrupted):
        _train_with(checkpoint)
    resumed = _train_with(Checkpoint(out / "checkpoint.pt", resume=True))
    torch.save({"uninterrupted": uninterrupted.state_dict(), "resumed": resumed.state_dict()}, out / f"rank{rank}.pt")


def _train_with(checkpoint):
    model = _network()
    train_autoencoder(model, _training_data(), _config(32),
                      generator=torch.Generator().manual_seed(5), checkpoint=checkpoint)
    return model


def test_a_stop_on_one_process_stops_all_at_the_same_batch_and_resumes_exactly(tmp_path):
    _spawn(_resume_worker, tmp_path)
    for rank in range(WORLD):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        for name, value in got["uninterrupted"].items():
            torch.testing.assert_close(got["resumed"][name], value, rtol=0, atol=0)


def test_a_checkpoint_of_two_processes_is_refused_by_one(tmp_path):
    from encluster.errors import ConfigError
    from encluster.training import Checkpoint, TrainingInterrupted

    checkpoint = Checkpoint(tmp_path / "checkpoint.pt")
    checkpoint.stop.set()
    with pytest.raises(TrainingInterrupted):
        _train_with(checkpoint)
    state = torch.load(checkpoint.path, weights_only=True)
    torch.save({**state, "world_size": 2}, checkpoint.path)  # as rank 0 of a 2-process run writes it
    with pytest.raises(ConfigError, match="written by 2 process.*this run has 1; resume with the same number"):
        _train_with(Checkpoint(checkpoint.path, resume=True))


def test_a_batch_that_does_not_split_over_the_processes_is_refused():
    from encluster.errors import ConfigError

    with pytest.raises(ConfigError, match="multiple of 2"):
        _train(33, group=Group(rank=0, world_size=2))


def _run_worker(rank, home, dataset_path):
    os.chdir(home / f"rank{rank}")
    config = RunConfig(dataset=str(dataset_path), preset="original", epochs=2, n_clusters=3)
    metrics, run_dir = run_experiment(config)
    (home / f"rank{rank}.json").write_text(json.dumps({"run_dir": str(run_dir) if run_dir else None,
                                                       "acc": metrics["acc"]}))


def test_only_rank_0_writes_the_run_directory_and_it_records_the_world_size(tmp_path, blobs):
    X, y = blobs
    np.savez(tmp_path / "blobs.npz", X=X, y=y)
    for rank in range(WORLD):
        (tmp_path / f"rank{rank}").mkdir()
    _spawn(_run_worker, tmp_path, tmp_path / "blobs.npz")
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(WORLD)]
    assert results[1]["run_dir"] is None
    assert list((tmp_path / "rank1").iterdir()) == []
    run_dir = tmp_path / "rank0" / results[0]["run_dir"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["world_size"] == WORLD and metrics["n_samples"] == len(X)
    assert {"model.safetensors", "codes.npy", "assignments.npy", "report.html"} <= {p.name for p in run_dir.iterdir()}
    assert [p.name for p in (tmp_path / "rank0" / "runs").iterdir()] == [run_dir.name]  # no leftover staging
    assert results[0]["acc"] == results[1]["acc"] == metrics["acc"]


def _fit_worker(rank, out, X, preset):
    if preset == "n2d-sampled":  # UMAP fitted on a sample by rank 0, every shard placed by transform
        monkeypatch = pytest.MonkeyPatch()
        monkeypatch.setattr("encluster.stages.embed.MAX_UMAP_FIT_SAMPLES", 100)
    extra = {"selflabel": "on", "selflabel_steps": 40} if preset == "n2d-selflabel" else {}
    est = EncodingClusterer(3, preset=preset.removesuffix("-sampled").removesuffix("-selflabel"), epochs=10,
                            batch_size=32, random_state=0, n_neighbors=10, **extra).fit(X)
    np.savez(out / f"{preset}-rank{rank}.npz", labels=est.labels_, centers=est.cluster_centers_, codes=est.codes_,
             predicted=est.predict(X[::7]), world=est.world_size_)


@pytest.mark.parametrize("preset", ["idec", "n2d", "n2d-sampled", "n2d-selflabel"])
def test_every_process_ends_with_the_same_fitted_model(tmp_path, blobs, preset):
    # idec: data-parallel refinement with the target's cluster frequencies summed over
    # both processes; n2d: UMAP and the mixture fitted on rank 0 and shared; selflabel: the sure
    # members chosen on rank 0, the classifier trained data-parallel, every shard relabelled.
    X, y = blobs
    _spawn(_fit_worker, tmp_path, X, preset)
    ranks = [np.load(tmp_path / f"{preset}-rank{r}.npz") for r in range(WORLD)]
    for name in ("labels", "centers", "codes", "predicted"):
        np.testing.assert_array_equal(ranks[0][name], ranks[1][name])
    assert int(ranks[0]["world"]) == WORLD
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(y, ranks[0]["labels"]) == 1.0  # three far-apart blobs: found exactly


def _torchrun(*args, cwd):
    import subprocess
    import sys

    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={WORLD}",
               "-m", "encluster", "run", "--dataset", "digits", "--max-samples", "300", "--preset", "original",
               "--epochs", "1", "--no-report", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=100)


def test_the_cli_under_torchrun_writes_one_run_and_prints_one_summary(tmp_path):
    done = _torchrun("--out", "run", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["world_size"] == WORLD
    assert done.stdout.count("results in run") == 1 and done.stderr.count("loaded digits") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_an_error_under_torchrun_exits_non_zero_and_leaves_no_run_directory(tmp_path):
    done = _torchrun("--batch-size", "33", "--out", "run", cwd=tmp_path)
    assert done.returncode != 0
    message = "batch_size=33 does not split evenly over 2 processes; use a multiple of 2"
    # Both refuse the launch before anything is written; whichever exits first, torchrun then
    # stops the other, so at least one of the two lines is there.
    assert f"\nerror: {message}" in done.stderr or f"\nerror (rank 1): {message}" in done.stderr
    assert "/encluster/" not in done.stderr  # no traceback from our processes (torchrun prints its own)
    assert list(tmp_path.iterdir()) == []
