"""Tables: the default and umap against k-means on the scaled raw features, on the tables
scikit-learn ships, 3 seeds each, with time; and how often the label-free separation check
(metrics.json's `separation`) says what the labels say.

    python benchmarks/tables.py      # writes results/tables.{json,md}

Each run is `encluster run --dataset TABLE.csv --label-column label --clusters K --seed S` in its
own process (no plots, no report), so the seconds are a user's end to end. The baseline is the
run's own: k-means (10 restarts) on the scaled raw features. Labels are only used for scoring.
"""

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from machine import describe, machine

RESULTS = Path(__file__).parent / "results"
TABLES = ("wine", "breast_cancer", "iris")
METHODS = ("default", "umap")
SEEDS = (0, 1, 2)


def write_table(name, folder):
    import sklearn.datasets

    bunch = getattr(sklearn.datasets, f"load_{name}")(as_frame=True)
    frame = bunch.frame.rename(columns={"target": "label"})
    path = Path(folder) / f"{name}.csv"
    frame.to_csv(path, index=False)
    return path, len(frame), frame.shape[1] - 1, int(frame["label"].nunique())


def run(path, k, preset, seed, out):
    command = [sys.executable, "-m", "encluster", "run", "--dataset", str(path), "--label-column", "label",
               "--clusters", str(k), "--preset", preset, "--seed", str(seed), "--no-plots", "--no-report",
               "--out", str(out), "-q"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=1200)
    if result.returncode != 0:
        raise SystemExit(result.stderr)
    return json.loads((out / "metrics.json").read_text())


def main():
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name in TABLES:
            path, n, d, k = write_table(name, folder)
            for preset in METHODS:
                for seed in SEEDS:
                    m = run(path, k, preset, seed, Path(folder) / f"{name}-{preset}-{seed}")
                    rows.append({"table": name, "rows": n, "features": d, "clusters": k, "preset": preset,
                                 "seed": seed, "acc": m["acc"], "nmi": m["nmi"], "raw_acc": m["pixels"]["acc"],
                                 "raw_nmi": m["pixels"]["nmi"], "separation": m["separation"],
                                 "total_s": m["total_seconds"], "train_s": m["train_seconds"]})
                    print(json.dumps(rows[-1]), flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "tables.json").write_text(json.dumps({"machine": machine(), "rows": rows}, indent=1))
    lines = [f"# Tables: the encoding against k-means on the raw features ({describe()})", "",
             f"Seeds {', '.join(map(str, SEEDS))}; `encluster run --dataset TABLE.csv --label-column label "
             "--clusters K --preset P --seed S --no-plots --no-report`.", "",
             "| table | rows x features | preset | ACC mean ± std | raw k-means ACC | NMI mean | raw NMI | "
             "check says raw >= encoding | labels say raw >= encoding | median total s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    agree = total = 0
    for name in TABLES:
        for preset in METHODS:
            group = [r for r in rows if r["table"] == name and r["preset"] == preset]
            accs = [r["acc"] for r in group]
            says = sum(r["separation"]["raw_at_least_as_good"] for r in group)
            truth = sum(r["raw_acc"] >= r["acc"] for r in group)
            agree += sum(r["separation"]["raw_at_least_as_good"] == (r["raw_acc"] >= r["acc"]) for r in group)
            total += len(group)
            lines.append(f"| {name} | {group[0]['rows']} x {group[0]['features']} | {preset} | "
                         f"{statistics.mean(accs):.3f} ± {statistics.pstdev(accs):.3f} | "
                         f"{statistics.mean(r['raw_acc'] for r in group):.3f} | "
                         f"{statistics.mean(r['nmi'] for r in group):.3f} | "
                         f"{statistics.mean(r['raw_nmi'] for r in group):.3f} | {says} of {len(group)} | "
                         f"{truth} of {len(group)} | {statistics.median(r['total_s'] for r in group):.1f} |")
    lines += ["", f"The label-free check agreed with the labels on {agree} of {total} runs."]
    (RESULTS / "tables.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
