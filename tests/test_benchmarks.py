"""Every maintained benchmark runs in its --quick mode (tiny data, one repeat) and writes its results,
so that none rots unseen between the runs that produce the committed figures. The figures
themselves are not checked here: they are measured by the benchmarks, never by tests."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).parent.parent / "benchmarks"


def _run(script, results, *extra):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(BENCHMARKS), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(BENCHMARKS / f"{script}.py"), "--quick", "--results", str(results),
                           *extra], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.parametrize("script, files", [
    ("accuracy", ["accuracy.json", "accuracy.md", "accuracy.jsonl"]),
    ("speed", ["speed.json", "speed.md"]),
    ("scaling", ["scaling.json", "scaling.md"]),
    ("tables", ["tables.json", "tables.md"]),
    ("predict_agreement", ["predict_agreement.json", "predict_agreement.md"]),
    ("umap_placement", ["umap_placement.json", "umap_placement.md"]),
    ("small_data", ["small_data.json", "small_data.md"]),
    ("confidence", ["confidence.json", "confidence.md"]),
])
def test_a_maintained_benchmark_runs_quick_and_writes_its_results(script, files, tmp_path):
    _run(script, tmp_path, *(["--workdir", str(tmp_path / "work")] if script == "scaling" else []))
    for name in files:
        assert (tmp_path / name).stat().st_size > 0, name
    payload = json.loads((tmp_path / files[0]).read_text())
    assert payload  # a results file names what ran: rows, a summary or runs
    assert "|" in (tmp_path / files[1]).read_text()  # a markdown table
    assert not any(BENCHMARKS.joinpath("results", name).stat().st_mtime > tmp_path.stat().st_ctime
                   for name in files if BENCHMARKS.joinpath("results", name).exists())  # committed ones untouched


def test_same_labels_quick_fingerprints_a_run_identical_to_itself(tmp_path):
    _run("same_labels", tmp_path, "--tag", "once")
    _run("same_labels", tmp_path, "--tag", "again")
    compared = _run("same_labels", tmp_path, "--compare", "once", "again")
    assert "Every fingerprint identical." in compared.stdout
    rows = json.loads((tmp_path / "same_labels_once.json").read_text())["rows"]
    assert [r["preset"] for r in rows] == ["umap", "default"] and all(r["dataset"] == "digits" for r in rows)


def test_no_benchmark_or_study_patches_a_module_of_encluster():
    """What a benchmark or study varies goes in as an argument or a setting: assigning to a stage's
    attribute (a constant, a class, a function) would change it for everything else in the process."""
    import re

    patched = re.compile(r"^\s*(?:encluster\.)?(?:stages\.)?(?:selflabel|embed|cluster|encode|refine|training|models)"
                         r"\.\w+\s*=[^=]", re.M)
    scripts = [*BENCHMARKS.glob("*.py"), *BENCHMARKS.parent.joinpath("studies").glob("*.py")]
    assert len(scripts) > 15
    assert not [f"{path.name}: {match.group(0).strip()}" for path in scripts
                for match in patched.finditer(path.read_text())]
