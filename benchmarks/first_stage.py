"""What makes the default's first stages (autoencoder, UMAP, mixture) weaker on smaller image sets,
measured without labels: each variant changes one setting of the default (self-labelling off), on
image sets of 1,797 to 10,000 samples, 3 seeds each. The criterion is seed agreement (mean pairwise
ARI of the seeds' clusterings, no labels): a setting that lets the mixture merge two groups and
split another on some seeds agrees less. ACC and NMI are shown beside it, for information only.

    python benchmarks/first_stage.py                 # writes results/first_stage.{json,md}
    python benchmarks/first_stage.py --sets digits   # a quick look
"""

import argparse
import json
import statistics
import time
from pathlib import Path

import image_sets
from machine import describe, machine

RESULTS = Path(__file__).parent / "results"
SEEDS = (0, 1, 2)
SETS = ("digits", "mnist-16x16", "mnist-test", "fashion-10k")
VARIANTS = {
    "default": {},
    "UMAP layout epochs: umap-learn's own (500 up to 10,000 samples)": {"umap_epochs": "auto"},
    "UMAP n_neighbors 10": {"n_neighbors": 10},
    "mixture: 20 fits": {"n_init": 20},
    "pretraining: 100 epochs": {"epochs": 100},
}


def main():
    from sklearn.metrics import adjusted_rand_score

    from encluster import EncodingClusterer, score

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=image_sets.NAMES)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()
    rows, lines = [], []
    for name in args.sets:
        X, y, shape = image_sets.load(name)
        for variant in args.variants:
            runs, labels = [], []
            for seed in SEEDS:
                clock = time.perf_counter()
                est = EncodingClusterer(10, random_state=seed, selflabel="off", **VARIANTS[variant]).fit(
                    X, image_shape=shape)
                labels.append(est.labels_)
                runs.append({"set": name, "n": len(X), "variant": variant, "seed": seed, **score(y, est.labels_),
                             "seconds": round(time.perf_counter() - clock, 1)})
                print(json.dumps(runs[-1]), flush=True)
            agreement = statistics.mean(adjusted_rand_score(a, b) for i, a in enumerate(labels) for b in labels[i + 1:])
            for run in runs:
                run["seed_agreement"] = agreement
            rows += runs
            lines.append(f"| {name} | {variant} | {agreement:.3f} | "
                         f"{statistics.mean(r['acc'] for r in runs):.3f} ± {statistics.pstdev(r['acc'] for r in runs):.3f}"
                         f" | {statistics.mean(r['nmi'] for r in runs):.3f} | "
                         f"{statistics.median(r['seconds'] for r in runs):.1f} |")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "first_stage.json").write_text(json.dumps({"machine": machine(), "seeds": SEEDS, "rows": rows}, indent=1))
    text = [f"# The default's first stages on smaller image sets ({describe()})", "",
            "`python benchmarks/first_stage.py`: `EncodingClusterer(10, random_state=seed, selflabel=\"off\", "
            f"**variant)`, seeds {', '.join(map(str, SEEDS))}. Seed agreement: mean pairwise ARI between the seeds' "
            "clusterings (no labels); ACC and NMI for information.", "",
            "| set | variant | seed agreement (ARI) | ACC mean ± std | NMI mean | median fit s |",
            "|---|---|---|---|---|---|", *lines]
    (RESULTS / "first_stage.md").write_text("\n".join(text) + "\n")
    print("\n".join(text))


if __name__ == "__main__":
    main()
