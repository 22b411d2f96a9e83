"""Do two versions of encluster give the same labels? Fit every preset with one seed and record
a fingerprint of what came out, so a refactoring can be shown to change nothing.

    python benchmarks/same_labels.py --tag before            # on the old code
    python benchmarks/same_labels.py --tag after             # on the new code, same machine
    python benchmarks/same_labels.py --compare before after  # the table, into results/same_labels.md
    python benchmarks/same_labels.py --quick --tag q --results /tmp/x   # digits, two presets
    (same_labels_float64codes.md: the same comparison after fit started encoding in float64,
    digits only, renamed by hand)

Each (data set, preset) fits `EncodingClusterer(10, preset=P, random_state=SEED)` on the raw data
and records the sha256 of `labels_`, of `predict` on the first 1,000 samples, of the codes, and
the final reconstruction loss. Both runs must use the same machine, thread count and library
versions (see the docs: what makes two runs identical). Nothing here looks at labels.
"""

import hashlib
import json
import sys
import time

import numpy as np

from common import benchmark_parser, machine

PRESETS = ("seed", "umap", "n2d", "dec", "idec", "default")
DATASETS = {"digits": {"name": "digits"}, "mnist-test": {"name": "mnist", "split": "test"}}


def _digest(array):
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:16]


def fingerprint(dataset, preset, seed):
    from encluster import EncodingClusterer, load_dataset

    spec = DATASETS[dataset]
    data = load_dataset(spec["name"], split=spec.get("split", "all"), scale=False)
    started = time.perf_counter()
    est = EncodingClusterer(10, preset=preset, random_state=seed).fit(data.X)
    seconds = time.perf_counter() - started
    return {"dataset": dataset, "preset": preset, "seed": seed, "labels": _digest(est.labels_),
            "predict_1000": _digest(est.predict(data.X[:1000])), "codes": _digest(est.codes_),
            "final_loss": est.history_[-1] if est.history_ else None,
            "cluster_sizes": np.bincount(est.labels_).tolist(), "fit_seconds": round(seconds, 1)}


def compare(tags, results):
    runs = [json.loads((results / f"same_labels_{tag}.json").read_text()) for tag in tags]
    keys = ("labels", "predict_1000", "codes", "final_loss")
    lines = [f"# Same labels: {' vs '.join(tags)}", "",
             f"Machine: {runs[0]['machine']['cpu']} ({runs[0]['machine']['torch_threads']} torch threads); "
             f"{tags[1]} on {runs[1]['machine']['cpu']}.", "",
             "| data set | preset | seed | labels | predict | codes | final loss | fit s |",
             "|---|---|---|---|---|---|---|---|"]
    same_everywhere = True
    for old, new in zip(runs[0]["rows"], runs[1]["rows"]):
        assert (old["dataset"], old["preset"]) == (new["dataset"], new["preset"]), "runs list different fits"
        same = {k: old[k] == new[k] for k in keys}
        same_everywhere &= all(same.values())
        cells = ["same" if same[k] else f"DIFFERENT ({old[k]} vs {new[k]})" for k in keys]
        lines.append(f"| {old['dataset']} | {old['preset']} | {old['seed']} | {' | '.join(cells)} | "
                     f"{old['fit_seconds']} / {new['fit_seconds']} |")
    lines += ["", "Every fingerprint identical." if same_everywhere else "Some fingerprints differ."]
    (results / "same_labels.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if same_everywhere else 1


def main():
    parser = benchmark_parser(__doc__)
    parser.add_argument("--tag", help="name of this run's results file (same_labels_TAG.json)")
    parser.add_argument("--compare", nargs=2, metavar="TAG", help="compare two tagged runs")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--presets", nargs="+", default=list(PRESETS))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.compare:
        return compare(args.compare, args.results)
    if args.quick:
        args.datasets, args.presets = ["digits"], ["umap", "default"]
    rows = []
    for dataset in args.datasets:
        for preset in args.presets:
            rows.append(fingerprint(dataset, preset, args.seed))
            print(json.dumps(rows[-1]), flush=True)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / f"same_labels_{args.tag}.json").write_text(json.dumps({"machine": machine(), "rows": rows},
                                                                          indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
