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
    one_line_error(encluster("run", "--resume", tmp_path / "plain"), "is not an encluster run")
    one_line_error(encluster("run", "--resume", tmp_path / "absent"), "does not exist")


def test_every_file_of_a_run_gets_the_same_permissions(tmp_path, table):
    out = tmp_path / "run"
    previous = os.umask(0o022)
    try:
        assert encluster("run", "--dataset", table, "--clusters", 3, "--out", out, "-q").returncode == 0
    finally:
        os.umask(previous)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()}
    assert set(modes.values()) == {0o644}, modes
