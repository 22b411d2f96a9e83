"""From how many samples per cluster self-labelling helps, and how long it needs there: the default with it
off, and on with at most 100, 300 or 1,000 passes over the sure members, side by side.

The default (`selflabel="auto"`) relabels with a classifier only for images of at least
`selflabel.MIN_PER_CLUSTER` samples per cluster, for at most `selflabel_passes` passes. The threshold rested
on two points (10-15 per cluster hurt, 100 helped); this study fills in between, on the small sets of
`benchmarks/small_data.py`, from 10 to about 180 samples per cluster. The label-free criterion is the
seeds' agreement (mean ARI between the clusterings of seeds 0-2): a stage that makes the clusters more
reproducible is keeping structure, one that makes them less is fitting noise. ACC is printed beside it,
for information.

    python studies/selflabel_per_cluster.py           # writes results/selflabel_per_cluster.{json,md}
    python studies/selflabel_per_cluster.py --sets mnist-200-each --variants on:100 on:300 \
        --add studies/results/selflabel_per_cluster.json   # more sets or variants, tabulated with the earlier ones

on:auto is the default's budget since this study (`selflabel_passes="auto"`: passes falling from 300 to 100
as clusters grow).
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))  # the shared helpers: common.py
from common import describe, seeds_agreement, write_results
from small_data import load

RESULTS = Path(__file__).parent / "results"
VARIANTS = ("off", "on:100", "on:300", "on:1000", "on:auto")
SETS = ("digits-rotated-40", "mnist-turned-30", "fashion-tinted-30", "fashion-flipped-20", "mnist-30-each",
        "mnist-100-each", "digits")


def fit(name, variant, seed):
    """The default on set `name` with self-labelling `variant`: "off", or "on:PASSES" (a number, or auto)."""
    from encluster import EncodingClusterer, score

    X, y, _ = load(name)
    k = len(np.unique(y))
    started = time.perf_counter()
    selflabel, _, passes = variant.partition(":")
    est = EncodingClusterer(k, random_state=seed, selflabel=selflabel,
                            **({"selflabel_passes": passes if passes == "auto" else int(passes)} if passes else {})
                            ).fit(X)
    return {"set": name, "variant": variant, "seed": seed, "n": len(X), "k": k,
            "per_cluster": round(len(X) / k, 1), "acc": round(score(y, est.labels_)["acc"], 4),
            "seconds": round(time.perf_counter() - started, 1), "steps": (est.selflabel_ or {}).get("steps"),
            "clusters_found": int(len(np.unique(est.labels_))), "labels": est.labels_.tolist()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", nargs="+", default=list(SETS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), help="off, or on:PASSES (a number, or auto)")
    parser.add_argument("--add", type=Path, nargs="+", default=[], metavar="JSON",
                        help="also tabulate earlier runs' selflabel_per_cluster.json (the sets and variants not "
                        "run now)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    earlier = [json.loads(path.read_text()) for path in args.add]
    rerun = {(name, v) for name in args.sets for v in args.variants}  # taken from this run, not an earlier one
    rows = [r for e in earlier for r in e["rows"] if (r["set"], r["variant"]) not in rerun]
    stats = {(entry["set"], v): st for e in earlier for entry in e["summary"] for v, st in entry["variants"].items()
             if (entry["set"], v) not in rerun}
    sizes = {entry["set"]: (entry["n"], entry["per_cluster"]) for e in earlier for entry in e["summary"]}
    for name in args.sets:
        for variant in args.variants:
            runs = [fit(name, variant, seed) for seed in args.seeds]
            for run in runs:
                print({k: v for k, v in run.items() if k != "labels"}, flush=True)
            stats[name, variant] = {"agreement": seeds_agreement([r["labels"] for r in runs]),
                                    "acc": statistics.mean(r["acc"] for r in runs),
                                    "seconds": statistics.median(r["seconds"] for r in runs),
                                    "steps": statistics.median(r["steps"] or 0 for r in runs),
                                    "clusters_found": min(r["clusters_found"] for r in runs)}
            sizes[name] = (runs[0]["n"], runs[0]["per_cluster"])
            rows += [{k: v for k, v in r.items() if k != "labels"} for r in runs]
    variants = sorted({v for _, v in stats}, key=lambda v: VARIANTS.index(v) if v in VARIANTS else len(VARIANTS))
    lines = [f"# Self-labelling by samples per cluster ({describe()})", "",
             f"`python studies/selflabel_per_cluster.py {' '.join(sys.argv[1:])}`".replace(" `", "`") +
             f": the default with `selflabel` off, and on with at most PASSES passes over the sure members (on:PASSES),"
             f" seeds {', '.join(map(str, args.seeds))}. Each cell: the seeds' agreement (mean ARI between the seeds' "
             "clusterings, no labels) / mean ACC (information only) / median seconds of a fit; steps: median "
             "self-labelling steps. Collapsed clusterings agree too: the fewest clusters any seed kept is in the json "
             "(clusters_found).", "",
             "| set | samples | per cluster | " + " | ".join(variants) + " | steps |",
             "|---|---|---|" + "---|" * len(variants) + "---|"]
    summary = []
    for name in dict.fromkeys(n for n, _ in stats):
        (n, per_cluster), mine = sizes[name], {v: stats[name, v] for v in variants if (name, v) in stats}
        summary.append({"set": name, "n": n, "per_cluster": per_cluster, "variants": mine})
        cells = [f"{e['agreement']:.3f} / {e['acc']:.3f} / {e['seconds']:.0f} s" if (e := mine.get(v)) else ""
                 for v in variants]
        steps = " / ".join(f"{mine[v]['steps']:.0f}" for v in variants if v != "off" and v in mine)
        lines.append(f"| {name} | {n:,} | {per_cluster:g} | " + " | ".join(cells) + f" | {steps} |")
    write_results(args.results, "selflabel_per_cluster",
                  {"seeds": args.seeds, "summary": summary, "rows": rows}, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
