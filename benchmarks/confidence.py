"""Does the per-sample confidence mean something? For each set and seed, the default's clusters are
scored on all samples, on the surest 50 %, 80 % and 90 % by confidence, and the share of all errors
that the least sure 10 % hold (10 % if the confidence ranked errors no better than chance). Labels
only score it: the confidence itself reads none (`encluster.confidence`).

    python benchmarks/confidence.py                           # results/confidence.{json,md}
    python benchmarks/confidence.py --quick --results /tmp/x  # tiny, one seed: that the script still runs

The sets are `small_data.py`'s: images of two sizes (8x8 digits, 28x28 MNIST and Fashion) and tables.
"""

import json
import statistics
import sys
import time

import numpy as np

from common import benchmark_parser, describe, write_results
from small_data import load

SETS = ("digits", "mnist-100-each", "fashion-flipped-20", "wine", "breast-cancer", "digits-table-20")
SEEDS = (0, 1, 2)
SURE = (0.5, 0.8, 0.9)


def run_one(name, seed):
    from encluster import EncodingClusterer
    from encluster.metrics import hungarian_matching

    X, y, image_shape = load(name)
    started = time.perf_counter()
    est = EncodingClusterer(len(np.unique(y)), random_state=seed).fit(X)
    seconds = time.perf_counter() - started
    mapping = hungarian_matching(y, est.labels_)
    right = np.array([mapping.get(int(c), -1) for c in est.labels_]) == y
    order = np.argsort(-est.confidence_, kind="stable")  # surest first
    least = order[-max(1, len(y) // 10):]
    return {"set": name, "seed": seed, "n": int(len(y)), "k": int(len(np.unique(y))), "method": est.method_,
            "source": est.confidence_source_, "acc": round(float(right.mean()), 4),
            "mean_confidence": round(float(est.confidence_.mean()), 4),
            **{f"acc_surest_{int(100 * q)}": round(float(right[order[: int(q * len(y))]].mean()), 4) for q in SURE},
            "errors_in_least_sure_10": round(float((~right[least]).sum() / max(1, (~right).sum())), 4),
            "seconds": round(seconds, 1)}


def markdown(rows, seeds):
    lines = [f"# Confidence: accuracy among the surest samples ({describe()})", "",
             f"`python benchmarks/{' '.join(['confidence.py', *sys.argv[1:]])}`: the default, seeds "
             f"{', '.join(map(str, seeds))}; means over seeds. ACC of the surest q: the clusters scored on the q "
             "of the samples of highest confidence (the matching of clusters to classes found on all of them). "
             "Errors in the least sure 10 %: their share of all wrong samples (chance: 0.10).", "",
             "| set | samples | classes | method | confidence from | ACC | mean confidence | ACC surest 50 % | "
             "ACC surest 80 % | ACC surest 90 % | errors in least sure 10 % |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in dict.fromkeys(r["set"] for r in rows):
        mine = [r for r in rows if r["set"] == name]

        def mean(key):
            return statistics.mean(r[key] for r in mine)

        lines.append(f"| {name} | {mine[0]['n']:,} | {mine[0]['k']} | {mine[0]['method']} | {mine[0]['source']} | "
                     f"{mean('acc'):.3f} | {mean('mean_confidence'):.3f} | {mean('acc_surest_50'):.3f} | "
                     f"{mean('acc_surest_80'):.3f} | {mean('acc_surest_90'):.3f} | "
                     f"{mean('errors_in_least_sure_10'):.2f} |")
    return "\n".join(lines)


def main():
    parser = benchmark_parser(__doc__)
    parser.add_argument("--sets", nargs="+", default=list(SETS))
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    args = parser.parse_args()
    if args.quick:
        args.sets, args.seeds = ["quick-images", "wine"], [0]
    rows = []
    for name in args.sets:
        for seed in args.seeds:
            rows.append(run_one(name, seed))
            print(json.dumps(rows[-1]), flush=True)
    text = markdown(rows, args.seeds)
    write_results(args.results, "confidence", {"seeds": args.seeds, "rows": rows}, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
