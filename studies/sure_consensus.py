"""Would the UMAP layouts' consensus make the sure members surer?

The default lays UMAP out several times on sets up to 33,333 samples and keeps the layout whose
clusters agree best with the others'. Its self-labelling teaches the classifier the members all of
whose nearest neighbours share their cluster; on MNIST's test images the remaining errors are
digits the clustering put in a wrong cluster *among* those sure members (4s taught as 9s). This
study asks, without labels, whether the other layouts single such members out: after matching each
layout's clusters to the kept one's (Hungarian, on their contingency table), a sample is in the
consensus when every layout puts it in the same cluster. Each row: the share of samples in the
consensus, the sure members, how many sure members the consensus would drop, and (scored with
labels, never used) how pure both sets are. Self-labelling is off: the sure members come from the
clusters before it.

    python studies/sure_consensus.py        # writes results/sure_consensus.{json,md}
"""

import json
from pathlib import Path

import sys
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))  # the shared helpers: common.py
import common
from common import describe

RESULTS = Path(__file__).parent / "results"


def matched(reference, other):
    """`other`'s labels renamed to the clusters of `reference` they overlap most (one to one)."""
    import numpy as np

    from encluster.metrics import hungarian_matching

    names = hungarian_matching(reference, other)
    return np.array([names.get(int(label), -1) for label in other])


def purity(y, clusters, rows):
    """Share of `rows` whose cluster's best-matching class (over all samples) is their class."""
    import numpy as np

    return float(np.mean(matched(y, clusters)[rows] == y[rows])) if len(rows) else 1.0


def consensus_of(dataset, seed):
    import numpy as np

    from encluster import EncodingClusterer
    from encluster.stages import selflabel

    X, y, shape = common.load_image_set(dataset)
    est = EncodingClusterer(10, random_state=seed, selflabel="off").fit(X, image_shape=shape)
    layouts, kept = est.layout_labels_, (est.layout_agreement_ or {"kept": 0})["kept"]
    reference = layouts[kept]
    votes = np.stack([matched(reference, labels) for labels in layouts])
    consensus = (votes == reference).all(axis=0)
    sure = selflabel.sure_members_of(est.embedding_, est.codes_, est.labels_, est.n_clusters_, 10, est.seed_)
    dropped = sure[~consensus[sure]]
    return {"dataset": dataset, "n_samples": len(X), "seed": seed, "layouts": len(layouts),
            "consensus_share": round(float(consensus.mean()), 4), "sure_members": len(sure),
            "dropped": len(dropped), "sure_purity": round(purity(y, reference, sure), 4),
            "kept_purity": round(purity(y, reference, sure[consensus[sure]]), 4),
            "dropped_purity": round(purity(y, reference, dropped), 4) if len(dropped) else None}


def markdown(rows, machine):
    lines = [f"# Sure members and the UMAP layouts' consensus ({machine})", "",
             "`python studies/sure_consensus.py`: the default's clusters before self-labelling; consensus = every "
             "layout (matched to the kept one) puts the sample in the same cluster. Purity scores with labels and "
             "chose nothing.", "",
             "| data | samples | seed | layouts | in consensus | sure members | dropped by consensus | "
             "purity of sure | purity without dropped | purity of dropped |", "|---" * 10 + "|"]
    for r in rows:
        gone = "-" if r["dropped_purity"] is None else f"{r['dropped_purity']:.3f}"
        lines.append(f"| {r['dataset']} | {r['n_samples']:,} | {r['seed']} | {r['layouts']} | "
                     f"{r['consensus_share']:.3f} | {r['sure_members']:,} | {r['dropped']:,} | {r['sure_purity']:.4f} | "
                     f"{r['kept_purity']:.4f} | {gone} |")
    return "\n".join(lines) + "\n"


def main():
    args = common.study_parser(__doc__).parse_args()
    rows = []
    for dataset in args.datasets:
        for seed in args.seeds:
            rows.append(consensus_of(dataset, seed))
            print(json.dumps(rows[-1]), flush=True)
    machine = describe()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "sure_consensus.json").write_text(json.dumps({"machine": machine, "runs": rows}, indent=2) + "\n")
    (RESULTS / "sure_consensus.md").write_text(markdown(rows, machine))
    print(markdown(rows, machine))


if __name__ == "__main__":
    main()
