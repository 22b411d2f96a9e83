"""How many steps, and how wide, the self-labelling classifier needs: chosen without labels.

For each image set the default's first stages run once (seed 0, self-labelling off, 30 pretraining
epochs: the default's when the grid ran, before it was shortened to pay for the classifier); a tenth of
the sure members (seeded) is held out, and classifiers of each width and step budget are trained
on the rest. The criterion is label-free: how often the classifier agrees with the clustering on
the held-out sure members. "Needed" is the fewest steps within 0.002 of the best agreement of
that width. ACC before and after relabelling every sample is printed beside it, for information
only: no choice reads it.

    python studies/selflabel_budget.py                  # writes results/selflabel_budget.{json,md}
    python studies/selflabel_budget.py --sets digits    # a quick look
"""

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

import sys
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))  # the shared helpers: common.py
import common
from common import describe, machine

RESULTS = Path(__file__).parent / "results"
# (width, steps, batch size). The batch of 128 came after the first run of 256: the same held-out agreement in
# half the time of 6,000 batches of 256 (rows added with --only).
GRID = ((16, 750, 256), (16, 1500, 256), (16, 3000, 256), (16, 6000, 256), (32, 3000, 256), (16, 6000, 128),
        (16, 12000, 64))
SETS = ("digits", "mnist-16x16", "mnist-test", "fashion-10k", "mnist")
TOLERANCE = 0.002


def study(name, grid):
    import torch

    from encluster import EncodingClusterer, score
    from encluster.distributed import current
    from encluster.scaling import ScaledRows
    from encluster.params import take
    from encluster.stages import selflabel

    X, y, shape = common.load_image_set(name)
    clock = time.perf_counter()
    # The first stages as the default ran them when this grid was chosen (30 pretraining epochs), for every row.
    est = EncodingClusterer(10, random_state=0, selflabel="off", epochs=30).fit(X, image_shape=shape)
    first = time.perf_counter() - clock
    data = ScaledRows(X.reshape(len(X), -1), est.scaler_)
    members = selflabel.sure_members_of(est.embedding_, est.codes_, est.labels_, est.n_clusters_, 10, est.seed_)
    order = np.random.default_rng(0).permutation(len(members))
    held, taught = np.sort(members[order[: len(members) // 10]]), np.sort(members[order[len(members) // 10:]])
    rows = []
    for width, steps, batch in grid:
        config = dataclasses.replace(selflabel.config(take(selflabel.SelfLabelSettings, {**est.resolved_params(),
                                                                                          "selflabel": "on"}),
                                                      shape, data.shape[1], est.training_.precision,
                                                      est.embedding_.n_neighbors, len(X) / est.n_clusters_),
                                     steps=steps, width=width)
        clock = time.perf_counter()
        classifier, _ = selflabel.fit(data, taught, est.labels_[taught], est.n_clusters_, config, seed=0,
                                      device=torch.device("cpu"), group=current(), batch_size=batch)
        seconds = time.perf_counter() - clock
        labels = selflabel.classify(classifier, data)
        rows.append({"set": name, "n": len(X), "shape": list(shape), "width": width, "steps": steps, "batch": batch,
                     "held_out_agreement": round(float((labels[held] == est.labels_[held]).mean()), 5),
                     "seconds": round(seconds, 1), "acc_before": round(score(y, est.labels_)["acc"], 4),
                     "acc_after": round(score(y, labels)["acc"], 4), "sure_members": int(len(members)),
                     "first_stage_seconds": round(first, 1)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def needed(rows, width):
    """The fewest steps within TOLERANCE of the best held-out agreement of `width` at batches of 256."""
    mine = [r for r in rows if r["width"] == width and r.get("batch", 256) == 256]
    best = max(r["held_out_agreement"] for r in mine)
    return min(r["steps"] for r in mine if r["held_out_agreement"] >= best - TOLERANCE)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=common.IMAGE_SETS)
    parser.add_argument("--only", nargs="+", metavar="WIDTH,STEPS,BATCH", help="run these points of the grid "
                        "alone, replacing their rows in the results and keeping the others")
    args = parser.parse_args()
    grid = [tuple(map(int, point.split(","))) for point in args.only] if args.only else GRID
    fresh = [row for name in args.sets for row in study(name, grid)]
    rows = fresh
    if args.only and (RESULTS / "selflabel_budget.json").exists():
        point = lambda r: (r["set"], r["width"], r["steps"], r.get("batch", 256))  # noqa: E731
        replaced = {point(r) for r in fresh}
        old = json.loads((RESULTS / "selflabel_budget.json").read_text())["rows"]
        rows = [r for r in old if point(r) not in replaced] + fresh
    order = {(w, s, b): i for i, (w, s, b) in enumerate(GRID)}
    rows.sort(key=lambda r: (SETS.index(r["set"]) if r["set"] in SETS else 99,
                             order.get((r["width"], r["steps"], r.get("batch", 256)), 99)))
    lines = []
    for name in dict.fromkeys(r["set"] for r in rows):
        mine = [r for r in rows if r["set"] == name]
        for r in mine:
            lines.append(f"| {name} | {r['n']:,} | {'x'.join(map(str, r['shape']))} | {r['width']} | "
                         f"{r['steps']:,} | {r.get('batch', 256)} | "
                         f"{r['held_out_agreement']:.4f} | {r['seconds']:.1f} | {r['acc_before']:.4f} | "
                         f"{r['acc_after']:.4f} |")
        lines.append(f"| {name} | | | **needed** | **{needed(mine, 16):,}** (width 16, batch 256) | | | | | |")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "selflabel_budget.json").write_text(json.dumps({"machine": machine(), "grid": GRID,
                                                               "tolerance": TOLERANCE, "rows": rows}, indent=1))
    text = [f"# Self-labelling: steps and width, chosen without labels ({describe()})", "",
            f"`python studies/selflabel_budget.py`: first stages of the default (seed 0), a tenth of the sure "
            f"members held out; needed = fewest steps within {TOLERANCE} of the width's best held-out agreement. "
            "ACC is shown, never used.", "",
            "| set | samples | shape | width | steps | batch | held-out agreement | classifier s | ACC before | ACC after |",
            "|---|---|---|---|---|---|---|---|---|---|", *lines]
    (RESULTS / "selflabel_budget.md").write_text("\n".join(text) + "\n")
    print("\n".join(text))


if __name__ == "__main__":
    main()
