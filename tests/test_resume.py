"""Interrupt and resume with real processes: Ctrl-C and SIGKILL at several points."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

# Long enough (dozens of short epochs) that signals land inside training.
ARGS = ["--preset", "original", "--dataset", "mnist", "--max-samples", "2000", "--epochs", "30", "--batch-size", "100",
        "--n-init", "2", "--no-plots", "--no-baseline", "-q", "--seed", "5"]


def start(*args):
    return subprocess.Popen([sys.executable, "-m", "encluster", "run", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(path, proc, timeout=120):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


def checkpoint_of(out):
    return out.with_name(f".{out.name}.partial") / "checkpoint.pt"


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    proc = start(*ARGS, "--out", out)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return np.load(out / "assignments.npy"), json.loads((out / "metrics.json").read_text())["history"]


def interrupted(out):
    """Start a run into `out`, press Ctrl-C once it has a checkpoint; return its exit code and stderr."""
    proc = start(*ARGS, "--out", out)
    wait_for(checkpoint_of(out), proc)
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


def test_ctrl_c_checkpoints_exits_130_and_resumes_identically(uninterrupted, tmp_path):
    out = tmp_path / "run"
    returncode, err = interrupted(out)
    assert returncode == 130, err
    assert f"encluster run --resume {out}" in err and "Traceback" not in err
    assert not out.exists() and checkpoint_of(out).exists()
    resumed = subprocess.run([sys.executable, "-m", "encluster", "run", "--resume", str(out), "-q"],
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    labels, history = uninterrupted
    assert np.array_equal(np.load(out / "assignments.npy"), labels)
    assert json.loads((out / "metrics.json").read_text())["history"] == history
    assert not checkpoint_of(out).parent.exists()


def test_a_run_started_on_a_gpu_continues_on_the_cpu_when_told_to(uninterrupted, tmp_path):
    out = tmp_path / "run"
    assert interrupted(out)[0] == 130
    # Make it a run that started on a GPU, then resume where none is visible.
    config = checkpoint_of(out).parent / "config.json"
    raw = json.loads(config.read_text())
    raw["run"]["device"] = "cuda"
    config.write_text(json.dumps(raw))
    no_gpu = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    resume = [sys.executable, "-m", "encluster", "run", "--resume", str(out), "-q"]
    refused = subprocess.run(resume, capture_output=True, text=True, timeout=300, env=no_gpu)
    assert refused.returncode != 0 and f"--resume {out} --device cpu" in refused.stderr
    assert "Traceback" not in refused.stderr and checkpoint_of(out).exists()
    resumed = subprocess.run([*resume, "--device", "cpu"], capture_output=True, text=True, timeout=300, env=no_gpu)
    assert resumed.returncode == 0, resumed.stderr
    labels, history = uninterrupted
    assert np.array_equal(np.load(out / "assignments.npy"), labels)
    assert json.loads((out / "metrics.json").read_text())["history"] == history
    assert json.loads((out / "config.json").read_text())["run"]["device"] == "cpu"


def test_sigkill_at_several_points_then_resume(uninterrupted, tmp_path):
    """Kill the same run again and again (before, during and after epochs); every time
    no complete-looking result may exist, and the final resume must equal the reference."""
    out = tmp_path / "run"
    kills = 0
    proc = start(*ARGS, "--out", out)
    for delay in (0.0, 0.05, 0.3, 0.0, 0.6):
        wait_for(checkpoint_of(out), proc)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        kills += 1
        if out.exists():  # it finished before the kill landed: then it must be complete
            assert {"metrics.json", "config.json", "assignments.npy", "model.json", "model.safetensors"} <= \
                {p.name for p in out.iterdir()}
            assert not checkpoint_of(out).parent.exists()
            break
        # Killed: no folder that could pass for a result, and the hidden one can be resumed.
        assert (checkpoint_of(out).parent / "config.json").is_file()
        proc = start("--resume", out, "-q")
    else:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    assert kills >= 3  # the kills landed in training, not after the run had finished
    labels, history = uninterrupted
    metrics = json.loads((out / "metrics.json").read_text())
    assert np.array_equal(np.load(out / "assignments.npy"), labels)
    assert metrics["history"] == history


def test_fresh_run_refuses_to_clobber_an_interrupted_one(tmp_path):
    out = tmp_path / "run"
    partial = out.with_name(f".{out.name}.partial")
    partial.mkdir()
    (partial / "config.json").write_text("{}")
    result = subprocess.run([sys.executable, "-m", "encluster", "run", *ARGS, "--out", str(out)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "--resume" in result.stderr and partial.exists()


def test_resume_without_an_interrupted_run(tmp_path):
    result = subprocess.run([sys.executable, "-m", "encluster", "run", "--resume", str(tmp_path / "nothing")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "no interrupted run" in result.stderr


SELFLABEL_ARGS = ["--preset", "original", "--dataset", "digits", "--epochs", "2", "--n-init", "1", "--selflabel", "on",
                  "--selflabel-steps", "1500", "--no-plots", "--no-baseline", "--no-report", "-q", "--seed", "3"]


def test_ctrl_c_during_self_labelling_resumes_to_the_same_labels(tmp_path):
    reference = tmp_path / "reference"
    done = subprocess.run([sys.executable, "-m", "encluster", "run", *SELFLABEL_ARGS, "--out", str(reference)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "run"
    proc = start(*SELFLABEL_ARGS, "--out", out)
    # The classifier's first checkpoint (step 500) means it is training: stop it there.
    wait_for(checkpoint_of(out).with_name("checkpoint.selflabel.pt"), proc, timeout=200)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "self-labelling" in err, err
    saved = checkpoint_of(out).with_name("checkpoint.selflabel.pt")
    assert saved.exists() and not out.exists()
    resumed = subprocess.run([sys.executable, "-m", "encluster", "run", "--resume", str(out), "-q"],
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert np.array_equal(np.load(out / "assignments.npy"), np.load(reference / "assignments.npy"))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["selflabel"] == json.loads((reference / "metrics.json").read_text())["selflabel"]
    assert not saved.parent.exists()


def refine_args(preset):
    return ["--preset", preset, "--dataset", "digits", "--epochs", "2", "--refine-epochs", "20", "--refine-tol", "0",
            "--refine-batch-size", "64", "--no-plots", "--no-baseline", "--no-report", "-q", "--seed", "4"]


@pytest.mark.parametrize("preset", ["dec", "idec"])
def test_ctrl_c_during_refinement_resumes_to_the_same_labels(tmp_path, preset):
    reference = tmp_path / "reference"
    done = subprocess.run([sys.executable, "-m", "encluster", "run", *refine_args(preset), "--out", str(reference)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "run"
    proc = start(*refine_args(preset), "--out", out)
    # Refinement keeps a checkpoint at each of its epochs' end: once there is one, it is refining.
    saved = checkpoint_of(out).with_name("checkpoint.refine.pt")
    wait_for(saved, proc, timeout=200)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "refining clusters" in err, err
    assert saved.exists() and not out.exists()
    resumed = subprocess.run([sys.executable, "-m", "encluster", "run", "--resume", str(out), "-q"],
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert np.array_equal(np.load(out / "assignments.npy"), np.load(reference / "assignments.npy"))
    assert np.array_equal(np.load(out / "codes.npy"), np.load(reference / "codes.npy"))
    assert not saved.parent.exists()
