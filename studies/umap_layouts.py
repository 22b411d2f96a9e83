"""UMAP layouts from several seeds on the same codes: how often one merges two groups, and whether
the clusters that agree best with the other layouts' (the default's `umap_layouts` choice) avoid it.
Beside it a second label-free criterion, the silhouette of each layout's clusters in code space (the
space all layouts share), and for each criterion how well the clusterings it keeps agree across
seeds (mean ARI; also label-free): a criterion that picks out a layout's accident agrees more.

For each image set and seed the default's first stages run once (self-labelling off); then the
codes are laid out by UMAP from seeds seed, seed + 1, ..., each layout clustered by the default's
mixture, exactly as `EncodingClusterer` does with `umap_layouts`. Each row: one layout's ACC, its
mean agreement (ARI) with the other layouts' clusters, its silhouette, and which each criterion
keeps. Neither reads labels; ACC is only the score.

    python studies/umap_layouts.py                    # the default's own layouts: results/umap_layouts.*
    python studies/umap_layouts.py --datasets digits --seeds 0 --layouts 3
    python studies/umap_layouts.py --umap-epochs 100   # the default's layouts before by_size: *_100ep.*
    python studies/umap_layouts.py --space input       # the scaled input laid out instead: *_input.*

With ``--space input`` no network is trained: the scaled input (what the `umap` preset lays out) takes
the codes' place, laid out and clustered with the default's UMAP and mixture settings, so the two
files show whether the agreement of layouts tells, without labels, which space clusters better.
"""

import json
import statistics
import time
from pathlib import Path

import numpy as np

import sys
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))  # the shared helpers: common.py
import common
from common import describe, seeds_agreement

RESULTS = Path(__file__).parent / "results"


def layouts_of(dataset, seed, count, umap_epochs=None, space="codes"):
    """ACC, agreement, silhouette and seconds of `count` layouts of one first-stage fit's codes (or of
    the scaled input), and the layouts' labels."""
    from sklearn.metrics import silhouette_score

    from encluster import EncodingClusterer, score
    from encluster.distributed import current
    from encluster.params import take
    from encluster.stages import cluster, embed

    X, y, shape = common.load_image_set(dataset)
    if space == "codes":
        est = EncodingClusterer(10, random_state=seed, selflabel="off", umap_layouts=1).fit(X, image_shape=shape)
    else:  # the umap preset's codes are its scaled input; its own single-pass layout is not used
        est = EncodingClusterer(10, preset="umap", random_state=seed, umap_epochs=1).fit(X, image_shape=shape)
    values = EncodingClusterer(10, random_state=seed).resolved_params()  # the default's UMAP and mixture settings
    if umap_epochs is not None:
        values["umap_epochs"] = umap_epochs
    embedding, clustering = take(embed.EmbedSettings, values), take(cluster.ClusterSettings, values)
    labelings, seconds = [], []
    for i in range(count):
        clock = time.perf_counter()
        _, embedded = embed.fit(est.codes_, 10, embedding, seed=seed + i, group=current())
        labelings.append(cluster.fit(embedded, est.codes_, clustering, "gmm", seed=seed, group=current()).labels)
        seconds.append(time.perf_counter() - clock)
    kept, agreement = cluster.most_agreeing(labelings)
    silhouettes = [float(silhouette_score(est.codes_, labels, sample_size=min(5_000, len(X)), random_state=0))
                   for labels in labelings]
    rows = [{"dataset": dataset, "n_samples": len(X), "seed": seed, "space": space, "layout": i,
             "acc": score(y, labels)["acc"],
             "agreement": agreement[i], "silhouette": silhouettes[i], "kept": i == kept,
             "kept_by_silhouette": i == int(np.argmax(silhouettes)), "seconds": round(seconds[i], 1)}
            for i, labels in enumerate(labelings)]
    return rows, labelings


CRITERIA = {"first layout": lambda rows: rows[0], "agreement (kept)": lambda rows: next(r for r in rows if r["kept"]),
            "silhouette": lambda rows: next(r for r in rows if r["kept_by_silhouette"])}


def by_fit(rows):
    groups = {}
    for row in rows:
        groups.setdefault((row["dataset"], row["seed"]), []).append(row)
    return groups


def seed_agreement(rows, labelings):
    """For each data set and criterion: the mean ARI between the clusterings it keeps for different seeds
    (`common.seeds_agreement`)."""
    result = {}
    for (dataset, seed), layouts in by_fit(rows).items():
        for criterion, choose in CRITERIA.items():
            kept = labelings[dataset, seed][choose(layouts)["layout"]]
            result.setdefault(dataset, {}).setdefault(criterion, []).append(kept)
    return {dataset: {criterion: seeds_agreement(kept)
                      for criterion, kept in criteria.items() if len(kept) > 1}
            for dataset, criteria in result.items()}


def markdown(rows, agreement_across_seeds, machine, command, space):
    what = ("the default's first stages (selflabel off), then UMAP from seeds seed..seed+4 on the same codes"
            if space == "codes" else "no network: UMAP from seeds seed..seed+4 on the scaled input")
    lines = [f"# UMAP layouts of the same {space} ({machine})", "",
             f"`{command}`: {what}, each clustered. Agreement: a layout's clusters' mean ARI with "
             "the other layouts' (what `umap_layouts` keeps the highest of); silhouette: of its clusters in the "
             "space laid out (5,000 samples). Neither reads labels; ACC only scores.", "",
             "| data | samples | seed | ACC of each layout | agreement of each | silhouette of each | ACC kept by "
             "agreement | by silhouette | first layout's | s per layout |", "|---" * 10 + "|"]
    groups = by_fit(rows)
    for (dataset, seed), layouts in groups.items():
        each = {name: " ".join(f"{r[name]:.3f}" for r in layouts) for name in ("acc", "agreement", "silhouette")}
        chosen = [CRITERIA[c](layouts)["acc"] for c in ("agreement (kept)", "silhouette", "first layout")]
        lines.append(f"| {dataset} | {layouts[0]['n_samples']:,} | {seed} | {each['acc']} | {each['agreement']} | "
                     f"{each['silhouette']} | **{chosen[0]:.3f}** | {chosen[1]:.3f} | {chosen[2]:.3f} | "
                     f"{statistics.median(r['seconds'] for r in layouts):.1f} |")
    lines += ["", "| criterion | mean ACC of the kept layouts | worst | seeds' agreement (mean ARI between "
              "seeds' kept clusterings), by data set |", "|---|---|---|---|"]
    for criterion, choose in CRITERIA.items():
        kept = [choose(layouts)["acc"] for layouts in groups.values()]
        across = ", ".join(f"{dataset} {values[criterion]:.3f}"
                           for dataset, values in agreement_across_seeds.items() if criterion in values)
        lines.append(f"| {criterion} | {statistics.fmean(kept):.3f} | {min(kept):.3f} | {across} |")
    return "\n".join(lines) + "\n"


def main():
    parser = common.study_parser(__doc__)
    parser.add_argument("--layouts", type=int, default=5)
    parser.add_argument("--umap-epochs", type=int, help="layout epochs (default: the default preset's)")
    parser.add_argument("--space", choices=("codes", "input"), default="codes",
                        help="lay out the default's codes, or the scaled input with no network")
    args = parser.parse_args()
    rows, labelings = [], {}
    for dataset in args.datasets:
        for seed in args.seeds:
            found, labelings[dataset, seed] = layouts_of(dataset, seed, args.layouts, args.umap_epochs, args.space)
            rows += found
            print(json.dumps(found), flush=True)
    machine, across = describe(), seed_agreement(rows, labelings)
    flags = (f" --umap-epochs {args.umap_epochs}" if args.umap_epochs else "") + \
        (" --space input" if args.space == "input" else "")
    name = "umap_layouts" + (f"_{args.umap_epochs}ep" if args.umap_epochs else "") + \
        ("_input" if args.space == "input" else "")
    command = "python studies/umap_layouts.py" + flags
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps({"machine": machine, "runs": rows, "seed_agreement": across,
                                                      "umap_epochs": args.umap_epochs, "space": args.space},
                                                     indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown(rows, across, machine, command, args.space))
    print(markdown(rows, across, machine, command, args.space))


if __name__ == "__main__":
    main()
