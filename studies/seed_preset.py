"""The original experiment, measured: `encluster run --preset seed` on all 70,000 MNIST
digits for several seeds, the encoding's scores beside raw-pixel k-means from the same run.

    python studies/seed_preset.py --seeds 0 1 2

Writes studies/results/seed_preset.json and .md. Each seed is a separate process,
one after the other (never two at once: the timings would disturb each other). Beside the
scores it records how much the seeds agree with each other (mean pairwise ARI of their
assignments): a check of the clustering that needs no labels.
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))  # the shared helpers: common.py
from common import machine, seeds_agreement

RESULTS = Path(__file__).parent / "results"
SCORES = ("acc", "nmi", "ari", "purity", "mean_cluster_purity")


def run_seed(seed, workdir, extra):
    out = Path(workdir) / f"seed{seed}"
    cmd = [sys.executable, "-m", "encluster", "run", "--dataset", "mnist", "--preset", "seed", "--seed", str(seed),
           "--out", str(out), "-q", *extra]
    subprocess.run(cmd, check=True)
    return json.loads((out / "metrics.json").read_text()), np.load(out / "assignments.npy")


def summarize(runs):
    def stats(values):
        return {"mean": statistics.mean(values), "std": statistics.pstdev(values), "min": min(values),
                "max": max(values)}

    return {"encoding": {s: stats([r[s] for r in runs]) for s in SCORES},
            "pixels": {s: stats([r["pixels"][s] for r in runs]) for s in SCORES},
            "train_seconds_median": statistics.median(r["train_seconds"] for r in runs),
            "total_seconds_median": statistics.median(r["total_seconds"] for r in runs),
            "peak_memory_mb_max": max(r["peak_memory_mb"] for r in runs)}


def markdown(result):
    lines = [f"# `seed` preset on MNIST-70k ({len(result['runs'])} seeds)", "",
             f"Machine: {result['machine']['cpu']}, {result['machine']['cores']} cores, torch "
             f"{result['machine']['torch']}; {result['date']}.", "", f"Command: `{result['command'].strip()}`.", "",
             "| seed | " + " | ".join(f"{s} (enc / pixels)" for s in SCORES) + " | train s | total s | peak MB |",
             "|---" * (len(SCORES) + 4) + "|"]
    for r in result["runs"]:
        cells = " | ".join(f"{r[s]:.3f} / {r['pixels'][s]:.3f}" for s in SCORES)
        lines.append(f"| {r['seed']} | {cells} | {r['train_seconds']:.0f} | {r['total_seconds']:.0f} | "
                     f"{r['peak_memory_mb']:.0f} |")
    s = result["summary"]
    cells = " | ".join(f"{s['encoding'][k]['mean']:.3f} ± {s['encoding'][k]['std']:.3f} / "
                       f"{s['pixels'][k]['mean']:.3f} ± {s['pixels'][k]['std']:.3f}" for k in SCORES)
    lines.append(f"| mean ± std | {cells} | {s['train_seconds_median']:.0f} (median) | "
                 f"{s['total_seconds_median']:.0f} (median) | {s['peak_memory_mb_max']:.0f} (max) |")
    if s["seed_agreement_ari"] is not None:
        lines += ["", f"Agreement between the seeds' clusterings (mean pairwise ARI, no labels used): "
                      f"{s['seed_agreement_ari']:.3f}. Final training loss: "
                      + ", ".join(f"{r['final_loss']:.4f}" for r in result["runs"]) + "."]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--name", default="seed_preset", help="result file name (without suffix)")
    parser.add_argument("extra", nargs="*", help="further `encluster run` options, after --")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        runs, assignments = zip(*[run_seed(seed, workdir, args.extra) for seed in args.seeds])
    keep = ("seed", "n_samples", "train_seconds", "total_seconds", "peak_memory_mb", "final_loss", "timings",
            "pixels", *SCORES)
    result = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "machine": machine(),
              "command": "encluster run --dataset mnist --preset seed --seed S " + " ".join(args.extra),
              "runs": [{k: r[k] for k in keep} for r in runs]}
    result["summary"] = {**summarize(result["runs"]),
                         # --max-samples draws another subset per seed: nothing to compare then.
                         "seed_agreement_ari": None if "--max-samples" in args.extra else seeds_agreement(assignments)}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"{args.name}.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
