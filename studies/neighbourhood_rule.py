"""UMAP's neighbourhood on small sets of many clusters: half the samples per cluster (the default's
`n_neighbors="auto"`), all of them, or N2D's 20, compared by the seeds' agreement (no labels).

The small-data benchmark's ablation (`default-20-neighbours`) read from ACC that 20 neighbours suit
500 garments in 20 groups better than the default's 12, and 400 digits in 40 groups worse. Whether a
rule other than half of n/k would be better is to be decided without labels: here by the seeds'
agreement (mean ARI between the clusterings of seeds 0-2). ACC is printed beside it, for information.

    python studies/neighbourhood_rule.py        # writes results/neighbourhood_rule.{json,md}
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))  # the shared helpers: common.py
from common import describe, seeds_agreement, write_results
from small_data import load

RESULTS = Path(__file__).parent / "results"
SETS = ("digits-rotated-40", "mnist-turned-30", "fashion-tinted-30", "fashion-flipped-20", "mnist-30-each")
RULES = ("half", "all", "20")


def neighbours(rule, per_cluster):
    """UMAP's n_neighbors under `rule` where clusters hold `per_cluster` samples ("half" is the default's)."""
    if rule == "half":
        return "auto"
    return 20 if rule == "20" else int(min(20, max(3, round(per_cluster))))


def fit(name, rule, seed):
    """The default on set `name` with UMAP's neighbourhood by `rule`."""
    from encluster import EncodingClusterer, score

    X, y, _ = load(name)
    k = len(np.unique(y))
    started = time.perf_counter()
    est = EncodingClusterer(k, random_state=seed, n_neighbors=neighbours(rule, len(X) / k)).fit(X)
    return {"set": name, "rule": rule, "seed": seed, "n": len(X), "k": k, "n_neighbors": est.embedding_.n_neighbors,
            "acc": round(score(y, est.labels_)["acc"], 4), "seconds": round(time.perf_counter() - started, 1),
            "labels": est.labels_.tolist()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", nargs="+", default=list(SETS))
    parser.add_argument("--rules", nargs="+", default=list(RULES), choices=RULES)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    rows, summary = [], []
    lines = [f"# UMAP's neighbourhood on small sets ({describe()})", "",
             f"`python studies/neighbourhood_rule.py {' '.join(sys.argv[1:])}`".replace(" `", "`") +
             f": the default with n_neighbors half the samples per cluster (half, the default), all of them (all, "
             f"at most 20) or 20, seeds {', '.join(map(str, args.seeds))}. Each cell: n_neighbors / the seeds' "
             "agreement (mean ARI between the seeds' clusterings, no labels) / mean ACC (information only) / median "
             "seconds of a fit.", "",
             "| set | samples | per cluster | " + " | ".join(args.rules) + " |",
             "|---|---|---|" + "---|" * len(args.rules)]
    for name in args.sets:
        cells, entry = [], {"set": name, "rules": {}}
        for rule in args.rules:
            runs = [fit(name, rule, seed) for seed in args.seeds]
            for run in runs:
                print({k: v for k, v in run.items() if k != "labels"}, flush=True)
            stats = {"n_neighbors": runs[0]["n_neighbors"],
                     "agreement": seeds_agreement([r["labels"] for r in runs]),
                     "acc": statistics.mean(r["acc"] for r in runs),
                     "seconds": statistics.median(r["seconds"] for r in runs)}
            entry["rules"][rule] = stats
            cells.append(f"{stats['n_neighbors']} / {stats['agreement']:.3f} / {stats['acc']:.3f} / "
                         f"{stats['seconds']:.0f} s")
            rows += [{k: v for k, v in r.items() if k != "labels"} for r in runs]
        n, k = runs[0]["n"], runs[0]["k"]
        summary.append({**entry, "n": n, "per_cluster": round(n / k, 1)})
        lines.append(f"| {name} | {n:,} | {n / k:g} | " + " | ".join(cells) + " |")
    write_results(args.results, "neighbourhood_rule", {"seeds": args.seeds, "summary": summary, "rows": rows},
                  "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
