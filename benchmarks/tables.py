"""Tables: the default and umap against k-means on the scaled raw features, 3 seeds each, with
time; and how often the label-free separation check (metrics.json's `separation`) says what the
labels say. The tables: the three scikit-learn ships, and three from R's mlbench package, among
them one of 20,000 rows (`apt-get install -y r-cran-mlbench`, read with `pip install pyreadr`;
skipped with a message where they are missing). No setting was chosen on any of them.

    python benchmarks/tables.py                  # writes results/tables.{json,md}
    python benchmarks/tables.py --tables wine    # a subset
    python benchmarks/tables.py --quick --results /tmp/x   # wine, the default, two seeds

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

import numpy as np
from common import benchmark_parser, describe, seeds_agreement, write_results

SKLEARN_TABLES = ("wine", "breast_cancer", "iris")
# mlbench's data set name and its class column: cars' silhouettes, satellite image pixels, letters.
MLBENCH_TABLES = {"vehicle": ("Vehicle", "Class"), "satellite": ("Satellite", "classes"),
                  "letters": ("LetterRecognition", "lettr")}
MLBENCH_DIR = Path("/usr/lib/R/site-library/mlbench/data")
TABLES = SKLEARN_TABLES + tuple(MLBENCH_TABLES)
# name: (preset, extra flags). "network" is the default with the autoencoder forced on, its widths sized
# from the table (what method "auto" decides against for tables this narrow).
METHODS = {"default": ("default", []), "network": ("default", ["--method", "n2d", "--hidden", "auto"]),
           "umap": ("umap", [])}
SEEDS = (0, 1, 2)


def read_frame(name):
    """The table as a data frame with a "label" column, or None where it is not installed."""
    if name in SKLEARN_TABLES:
        import sklearn.datasets

        bunch = getattr(sklearn.datasets, f"load_{name}")(as_frame=True)
        return bunch.frame.rename(columns={"target": "label"})
    data_set, label = MLBENCH_TABLES[name]
    try:
        import pyreadr
    except ImportError as exc:
        print(f"skipping {name}: {exc}; apt-get install -y r-cran-mlbench && pip install pyreadr", file=sys.stderr)
        return None
    try:
        frame = pyreadr.read_r(MLBENCH_DIR / f"{data_set}.rda")[data_set]
    except (OSError, pyreadr.custom_errors.PyreadrError) as exc:
        print(f"skipping {name}: {exc}; apt-get install -y r-cran-mlbench && pip install pyreadr", file=sys.stderr)
        return None
    return frame.rename(columns={label: "label"}).assign(label=lambda f: f["label"].astype(str))


def write_table(frame, name, folder):
    path = Path(folder) / f"{name}.csv"
    frame.to_csv(path, index=False)
    return path, len(frame), frame.shape[1] - 1, int(frame["label"].nunique())


def run(path, k, method, seed, out):
    preset, flags = METHODS[method]
    command = [sys.executable, "-m", "encluster", "run", "--dataset", str(path), "--label-column", "label",
               "--clusters", str(k), "--preset", preset, *flags, "--seed", str(seed), "--no-plots", "--no-report",
               "--out", str(out), "-q"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=1200)
    if result.returncode != 0:
        raise SystemExit(result.stderr)
    return json.loads((out / "metrics.json").read_text()), np.load(out / "assignments.npy")


def main():
    parser = benchmark_parser(__doc__)
    parser.add_argument("--tables", nargs="+", choices=TABLES, default=list(TABLES))
    args = parser.parse_args()
    seeds, methods = (SEEDS[:2], {"default": METHODS["default"]}) if args.quick else (SEEDS, METHODS)
    if args.quick:
        args.tables = ["wine"]
    rows, agreement = [], {}
    with tempfile.TemporaryDirectory() as folder:
        for name in args.tables:
            frame = read_frame(name)
            if frame is None:
                continue
            path, n, d, k = write_table(frame, name, folder)
            for method in methods:
                assignments = []
                for seed in seeds:
                    m, labels = run(path, k, method, seed, Path(folder) / f"{name}-{method}-{seed}")
                    assignments.append(labels)
                    rows.append({"table": name, "rows": n, "features": d, "clusters": k, "preset": method,
                                 "method": m["method"], "seed": seed, "acc": m["acc"], "nmi": m["nmi"],
                                 "raw_acc": m["pixels"]["acc"], "raw_nmi": m["pixels"]["nmi"],
                                 "separation": m["separation"], "total_s": m["total_seconds"],
                                 "train_s": m["train_seconds"]})
                    print(json.dumps(rows[-1]), flush=True)
                agreement[f"{name}/{method}"] = seeds_agreement(assignments)
    lines = [f"# Tables: the encoding against k-means on the raw features ({describe()})", "",
             f"Seeds {', '.join(map(str, seeds))}; `encluster run --dataset TABLE.csv --label-column label "
             "--clusters K --preset P --seed S --no-plots --no-report`. The baseline is each run's own k-means "
             "(10 restarts) on the scaled features. Target: the default's mean ACC >= raw k-means' - 0.01.", "",
             "| table | rows x features | variant | method run | ACC mean ± std | raw k-means ACC | target | NMI mean | "
             "raw NMI | seed agreement (ARI) | check says raw >= encoding | labels say raw >= encoding | "
             "median total s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    agree = {"both spaces": 0, "input only": 0}
    for name in dict.fromkeys(r["table"] for r in rows):
        for preset in methods:
            group = [r for r in rows if r["table"] == name and r["preset"] == preset]
            accs, raw = [r["acc"] for r in group], statistics.mean(r["raw_acc"] for r in group)
            says = sum(r["separation"]["raw_at_least_as_good"] for r in group)
            truth = [r["raw_acc"] >= r["acc"] for r in group]
            agree["both spaces"] += sum(r["separation"]["raw_at_least_as_good"] == t for r, t in zip(group, truth))
            agree["input only"] += sum((r["separation"]["baseline"] >= r["separation"]["encoding"]) == t
                                       for r, t in zip(group, truth))
            met = ("met" if statistics.mean(accs) >= raw - 0.01 else "missed") if preset == "default" else ""
            lines.append(f"| {name} | {group[0]['rows']} x {group[0]['features']} | {preset} | {group[0]['method']} | "
                         f"{statistics.mean(accs):.3f} ± {statistics.pstdev(accs):.3f} | {raw:.3f} | {met} | "
                         f"{statistics.mean(r['nmi'] for r in group):.3f} | "
                         f"{statistics.mean(r['raw_nmi'] for r in group):.3f} | {agreement[f'{name}/{preset}']:.3f} | "
                         f"{says} of {len(group)} | "
                         f"{sum(truth)} of {len(group)} | {statistics.median(r['total_s'] for r in group):.1f} |")
    lines += ["", f"The label-free check (raw k-means at least as well separated on the scaled input and in the space "
              f"the encoding clustered) agreed with the labels on {agree['both spaces']} of {len(rows)} runs; "
              f"on the scaled input alone it would have agreed on {agree['input only']}."]
    write_results(args.results, "tables", {"rows": rows, "seed_agreement": agreement}, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
