"""How often predict(X_train) gives the fitted label, and whether predict is row-exact, for a
few layout-epoch counts of UMAP's transform (the label-free figure TRANSFORM_EPOCHS was chosen by).

    python benchmarks/predict_agreement.py      # writes results/predict_agreement.{json,md}
    python benchmarks/predict_agreement.py --quick --results /tmp/x   # 300 digits, one epoch count

Each row fits one model (seed 0), then for each epoch count predicts the training data whole,
times it, predicts it again shuffled in 7 uneven batches, and its first 500 rows one at a time:
row-exact means all three agree on every row. Nothing here looks at the data's labels.
"""

import time

import numpy as np

from common import benchmark_parser, describe, write_results

CASES = [("digits", "all", "n2d"), ("digits", "all", "umap"), ("digits", "all", "default"), ("mnist", "test", "default")]


def predicted(est, X, epochs):
    """`est.predict(X)` (a UMAP method without a classifier), with `epochs` layout epochs placing each row."""
    from encluster.stages import cluster

    codes = est.transform(X)
    return cluster.predict(est.cluster_centers_, est.mixture_, est.embedding_.transform(codes, epochs=epochs), codes)


def main():
    from encluster import EncodingClusterer, load_dataset

    args = benchmark_parser(__doc__).parse_args()
    rows = []
    for name, split, preset in CASES[2:3] if args.quick else CASES:
        data = load_dataset(name, split=split, scale=False, max_samples=300 if args.quick else None)
        est = EncodingClusterer(10, preset=preset, random_state=0, **({"epochs": 1, "steps": 0} if args.quick
                                                                      else {})).fit(data.X)
        for epochs in (100,) if args.quick else (30, 100, 200):
            started = time.perf_counter()
            whole = predicted(est, data.X, epochs)
            seconds = time.perf_counter() - started
            batched = np.empty_like(whole)
            for part in np.array_split(np.random.default_rng(1).permutation(len(data.X)), 7):
                batched[part] = predicted(est, data.X[part], epochs)
            first = np.array([predicted(est, data.X[i : i + 1], epochs)[0] for i in range(min(500, len(data.X)))])
            rows.append({"dataset": f"{name}-{split}", "preset": preset, "transform_epochs": epochs,
                         "agreement": round(float((whole == est.labels_).mean()), 4),
                         "predict_s": round(seconds, 2),
                         "row_exact": bool((whole == batched).all() and (whole[: len(first)] == first).all())})
            print(rows[-1], flush=True)
    lines = [f"# predict on the training data: agreement with labels_ ({describe()})", "",
             "| data set | preset | transform epochs | agreement | predict s | row-exact |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['dataset']} | {r['preset']} | {r['transform_epochs']} | {r['agreement']:.4f} | {r['predict_s']} | "
              f"{'yes' if r['row_exact'] else 'no'} |" for r in rows]
    write_results(args.results, "predict_agreement", {"rows": rows}, "\n".join(lines))


if __name__ == "__main__":
    main()
