"""Self-labelling on tables: does an MLP trained on the sure members, with or without feature noise,
help where the default runs no classifier? The default's clusters of scikit-learn's three tables
(and mlbench's, where installed: see tables.py) against the same with ``selflabel="on"``, 3 seeds each.
The criterion needs no labels: seed agreement (mean pairwise ARI of the seeds' clusterings). ACC is
shown beside it, for information.

    python studies/table_selflabel.py            # writes results/table_selflabel.{json,md}
"""

import json
import statistics
import time
from pathlib import Path

import sys
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))  # the shared helpers: common.py
from common import describe, machine
from tables import SKLEARN_TABLES, read_frame

RESULTS = Path(__file__).parent / "results"
SEEDS = (0, 1, 2)
VARIANTS = {"default (no classifier)": {}, "selflabel, MLP with feature noise 0.1": {"selflabel": "on"},
            "selflabel, MLP without noise": {"selflabel": "on", "feature_noise": 0.0}}


def main():
    from sklearn.metrics import adjusted_rand_score

    from encluster import EncodingClusterer, score

    rows, lines = [], []
    for name in SKLEARN_TABLES + ("vehicle", "satellite"):
        frame = read_frame(name)
        if frame is None:
            continue
        X, y = frame.drop(columns="label").to_numpy(dtype=float), frame["label"].astype("category").cat.codes.to_numpy()
        k = len(set(y))
        for variant, settings in VARIANTS.items():
            runs, labels = [], []
            for seed in SEEDS:
                clock = time.perf_counter()
                est = EncodingClusterer(k, random_state=seed, **settings).fit(X)
                labels.append(est.labels_)
                runs.append({"table": name, "rows": len(X), "variant": variant, "seed": seed,
                             **score(y, est.labels_), "moved": (est.selflabel_ or {}).get("moved", 0),
                             "seconds": round(time.perf_counter() - clock, 1)})
                print(json.dumps(runs[-1]), flush=True)
            agreement = statistics.mean(adjusted_rand_score(a, b) for i, a in enumerate(labels) for b in labels[i + 1:])
            rows += [{**r, "seed_agreement": agreement} for r in runs]
            lines.append(f"| {name} | {len(X)} x {X.shape[1]} | {variant} | {agreement:.3f} | "
                         f"{statistics.mean(r['acc'] for r in runs):.3f} ± {statistics.pstdev(r['acc'] for r in runs):.3f} | "
                         f"{statistics.mean(r['moved'] for r in runs):.1f} | {statistics.median(r['seconds'] for r in runs):.1f} |")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "table_selflabel.json").write_text(json.dumps({"machine": machine(), "rows": rows}, indent=1))
    text = [f"# Self-labelling on tables ({describe()})", "",
            f"`python studies/table_selflabel.py`: `EncodingClusterer(k, random_state=seed, **variant)`, seeds "
            f"{', '.join(map(str, SEEDS))}. Seed agreement: mean pairwise ARI of the seeds' clusterings (no labels).",
            "", "| table | rows x features | variant | seed agreement (ARI) | ACC mean ± std | samples moved | median s |",
            "|---|---|---|---|---|---|---|", *lines]
    (RESULTS / "table_selflabel.md").write_text("\n".join(text) + "\n")
    print("\n".join(text))


if __name__ == "__main__":
    main()
