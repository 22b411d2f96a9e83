"""The label-free study behind the default for tables: which scaling, and a network or none.

For each of the tables scikit-learn ships, every variant is fitted with 3 seeds, and the variants
are compared by how well those seeds' clusterings agree with each other (mean pairwise adjusted
Rand index): a setting whose clusters change with the seed cannot be trusted on data without
labels. ACC is printed beside it for the reader, and was not used to choose. Variants: UMAP of the
columns (no network, method umap) after min-max, z-score or quantile scaling (scikit-learn's
QuantileTransformer, applied before, so the model sees values already on [0, 1]); and the default's
network (method n2d, widths from the number of columns) after min-max and z-score scaling.

    python studies/table_choices.py        # writes results/table_choices.{json,md}
"""

import json
import statistics
import time
from pathlib import Path

import sys
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))  # the shared helpers: common.py
from common import describe, machine

RESULTS = Path(__file__).parent / "results"
TABLES = ("wine", "breast_cancer", "iris")
SEEDS = (0, 1, 2)
# name: (quantile first, estimator settings on top of the default preset)
VARIANTS = {
    "no network, min-max": (False, {"method": "umap", "scaling": "minmax"}),
    "no network, z-score": (False, {"method": "umap", "scaling": "standard"}),
    "no network, quantile": (True, {"method": "umap"}),
    "network, min-max": (False, {"method": "n2d", "hidden": "auto", "scaling": "minmax"}),
    "network, z-score": (False, {"method": "n2d", "hidden": "auto", "scaling": "standard"}),
}


def main():
    import sklearn.datasets
    from sklearn.metrics import adjusted_rand_score
    from sklearn.preprocessing import QuantileTransformer

    from encluster import EncodingClusterer, score

    rows, lines = [], []
    for name in TABLES:
        X, y = getattr(sklearn.datasets, f"load_{name}")(return_X_y=True)
        k = len(set(y))
        for variant, (quantile, settings) in VARIANTS.items():
            data = QuantileTransformer(n_quantiles=min(1000, len(X)), random_state=0).fit_transform(X) if quantile else X
            labels, accs, seconds = [], [], []
            for seed in SEEDS:
                clock = time.perf_counter()
                est = EncodingClusterer(k, random_state=seed, **settings).fit(data)
                seconds.append(time.perf_counter() - clock)
                labels.append(est.labels_)
                accs.append(score(y, est.labels_)["acc"])
            agreement = statistics.mean(adjusted_rand_score(a, b) for i, a in enumerate(labels) for b in labels[i + 1:])
            rows.append({"table": name, "variant": variant, "seed_agreement": agreement, "acc": accs,
                         "seconds": seconds})
            print(json.dumps(rows[-1]), flush=True)
            lines.append(f"| {name} | {variant} | {agreement:.3f} | {statistics.mean(accs):.3f} ± "
                         f"{statistics.pstdev(accs):.3f} | {statistics.median(seconds):.1f} |")
    means = {v: statistics.mean(r["seed_agreement"] for r in rows if r["variant"] == v) for v in VARIANTS}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "table_choices.json").write_text(json.dumps({"machine": machine(), "rows": rows,
                                                            "mean_seed_agreement": means}, indent=1))
    text = [f"# Tables: scaling, and a network or none, by seed agreement ({describe()})", "",
            f"`python studies/table_choices.py`: seeds {', '.join(map(str, SEEDS))}; seed agreement is the mean "
            "pairwise ARI between the seeds' clusterings (no labels); ACC only for the reader.", "",
            "| table | variant | seed agreement (ARI) | ACC mean ± std | median fit s |", "|---|---|---|---|---|",
            *lines, "", "Mean seed agreement over the tables: " +
            "; ".join(f"{v} {m:.3f}" for v, m in sorted(means.items(), key=lambda item: -item[1])) + "."]
    (RESULTS / "table_choices.md").write_text("\n".join(text) + "\n")
    print("\n".join(text))


if __name__ == "__main__":
    main()
