"""Small image sets: the default with its step budget (steps="auto") against the same default trained
for its 30 epochs alone (steps=0, what it did before), side by side in one run, 3 seeds each.

The sets are ones a user might bring and that no setting was tuned on: scikit-learn's `digits`,
random subsets of MNIST of 1,000 and 3,000 images, and 3,000 MNIST images shrunk to 16x16. Each
row gives ACC, NMI, the agreement between seeds' clusterings (mean ARI, label-free) and the seconds
of one fit. Labels are used for the scores only.

    python studies/small_sets.py        # writes results/small_sets.{json,md}
"""

import json
import statistics
import time
from pathlib import Path

import numpy as np

import sys
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))  # the shared helpers: common.py
from common import describe, machine

RESULTS = Path(__file__).parent / "results"
SEEDS = (0, 1, 2)
VARIANTS = {"default (steps auto)": {}, "default, 30 epochs only (steps 0)": {"steps": 0}}


def data_sets():
    import torch

    from encluster import load_dataset

    digits = load_dataset("digits", scale=False)
    yield "digits", digits.X, digits.y
    mnist = load_dataset("mnist", scale=False)
    rng = np.random.default_rng(0)
    for n in (1_000, 3_000):
        keep = np.sort(rng.choice(len(mnist.X), n, replace=False))
        yield f"mnist-{n // 1000}k", mnist.X[keep], mnist.y[keep]
    keep = np.sort(rng.choice(len(mnist.X), 3_000, replace=False))
    small = torch.nn.functional.interpolate(torch.as_tensor(mnist.X[keep].reshape(-1, 1, 28, 28)).float(),
                                            size=(16, 16), mode="area")
    yield "mnist-16x16-3k", (small.reshape(len(small), -1).numpy() / 255).astype(np.float32), mnist.y[keep]


def main():
    from sklearn.metrics import adjusted_rand_score

    from encluster import EncodingClusterer, score

    rows, lines = [], []
    for name, X, y in data_sets():
        for variant, overrides in VARIANTS.items():
            labels, runs = [], []
            for seed in SEEDS:
                clock = time.perf_counter()
                est = EncodingClusterer(10, random_state=seed, **overrides).fit(X)
                seconds = time.perf_counter() - clock
                labels.append(est.labels_)
                runs.append({"data": name, "n": len(X), "variant": variant, "seed": seed, "epochs": est.training_.epochs,
                             **score(y, est.labels_), "seconds": round(seconds, 1)})
                print(json.dumps(runs[-1]), flush=True)
            agreement = statistics.mean(adjusted_rand_score(a, b) for i, a in enumerate(labels) for b in labels[i + 1:])
            rows += runs
            lines.append(f"| {name} | {len(X):,} | {variant} | {runs[0]['epochs']} | "
                         f"{statistics.mean(r['acc'] for r in runs):.3f} ± {statistics.pstdev(r['acc'] for r in runs):.3f} | "
                         f"{statistics.mean(r['nmi'] for r in runs):.3f} | {agreement:.3f} | "
                         f"{statistics.median(r['seconds'] for r in runs):.1f} |")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "small_sets.json").write_text(json.dumps({"machine": machine(), "rows": rows}, indent=1))
    text = [f"# Small image sets: the step budget against 30 epochs alone ({describe()})", "",
            f"`python studies/small_sets.py`: `EncodingClusterer(10, random_state=seed)` and the same with "
            f"`steps=0`, seeds {', '.join(map(str, SEEDS))}.", "",
            "| data | samples | variant | epochs | ACC mean ± std | NMI mean | seed agreement (ARI) | median fit s |",
            "|---|---|---|---|---|---|---|---|", *lines]
    (RESULTS / "small_sets.md").write_text("\n".join(text) + "\n")
    print("\n".join(text))


if __name__ == "__main__":
    main()
