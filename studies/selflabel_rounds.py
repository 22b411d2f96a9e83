"""Self-labelling in rounds: does a second classifier, taught by the first one's labels, correct
what the first left?

For each image set and seed the default runs once (one round of self-labelling, as it does). Then,
for each further round, the sure members are chosen again from the current labels (the same rule:
all of a sample's nearest neighbours in code space, from UMAP's graph, in its cluster), a fresh
classifier with the default's settings is trained on them and relabels every sample. Each row: a
round's sure members, how many samples it moved, its seconds, and its ACC. Label-free: the sure
members' count and how well the seeds' labels agree after each round (mean ARI between seeds); ACC
only scores.

    python studies/selflabel_rounds.py                       # writes results/selflabel_rounds.{json,md}
    python studies/selflabel_rounds.py --datasets digits --rounds 5
"""

import json
import statistics
import time
from pathlib import Path

import sys
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))  # the shared helpers: common.py
import common
from common import describe, seeds_agreement

RESULTS = Path(__file__).parent / "results"


def rounds_of(dataset, seed, rounds):
    """The default's fit, then `rounds - 1` more rounds of self-labelling; each round's row and labels."""
    import torch

    from encluster import EncodingClusterer, score
    from encluster.distributed import current
    from encluster.scaling import ScaledRows
    from encluster.stages import selflabel

    X, y, shape = common.load_image_set(dataset)
    clock = time.perf_counter()
    est = EncodingClusterer(10, random_state=seed).fit(X, image_shape=shape)
    first = {"dataset": dataset, "n_samples": len(X), "seed": seed, "round": 1,
             "sure_members": est.selflabel_["sure_members"], "moved": est.selflabel_["moved"],
             "seconds": round(est.timings_["selflabel"], 1), "acc": score(y, est.labels_)["acc"],
             "acc_before": score(y, est.clustered_labels_)["acc"], "fit_seconds": round(time.perf_counter() - clock, 1)}
    rows, labelings = [first], [est.labels_.copy()]
    data = ScaledRows(est._check_width(X), est.scaler_)
    config = est.selflabeling_
    for number in range(2, rounds + 1):
        clock = time.perf_counter()
        members = selflabel.sure_members_of(est.embedding_, est.codes_, est.labels_, est.n_clusters_, config.neighbors,
                                             est.seed_)
        classifier, _ = selflabel.fit(data, members, est.labels_[members], est.n_clusters_, config,
                                      seed=est.seed_ + 10 * number, device=torch.device("cpu"), group=current())
        labels = selflabel.classify(classifier, data)
        moved, _ = selflabel.moves(est.labels_, labels, est.n_clusters_)
        est.labels_ = labels
        rows.append({"dataset": dataset, "n_samples": len(X), "seed": seed, "round": number,
                     "sure_members": len(members), "moved": int(moved), "seconds": round(time.perf_counter() - clock, 1),
                     "acc": score(y, labels)["acc"]})
        labelings.append(labels.copy())
    return rows, labelings


def seed_agreement(labelings):
    """For each data set and round: the mean ARI between the seeds' labels after that round."""
    found = {}
    for (dataset, _), rounds in labelings.items():
        for number, labels in enumerate(rounds, start=1):
            found.setdefault(dataset, {}).setdefault(number, []).append(labels)
    return {dataset: {number: seeds_agreement(kept) for number, kept in by_round.items()
                      if len(kept) > 1} for dataset, by_round in found.items()}


def markdown(rows, across, machine):
    lines = [f"# Self-labelling in rounds ({machine})", "",
             "`python studies/selflabel_rounds.py`: the default (round 1 is its own self-labelling), then each "
             "further round picks the sure members from the current labels and trains a fresh classifier on them. "
             "Sure members and the seeds' agreement (mean ARI between seeds) need no labels; ACC only scores.", "",
             "| data | samples | seed | ACC first stages | ACC after each round | sure members in each round | "
             "moved in each round | s per round |", "|---" * 8 + "|"]
    fits = {}
    for row in rows:
        fits.setdefault((row["dataset"], row["seed"]), []).append(row)
    for (dataset, seed), each in fits.items():
        lines.append(f"| {dataset} | {each[0]['n_samples']:,} | {seed} | {each[0]['acc_before']:.3f} | "
                     + " ".join(f"{r['acc']:.3f}" for r in each) + " | "
                     + " ".join(f"{r['sure_members']:,}" for r in each) + " | "
                     + " ".join(f"{r['moved']:,}" for r in each) + " | "
                     + " ".join(f"{r['seconds']:.0f}" for r in each) + " |")
    lines += ["", "| data | mean ACC after each round | seeds' agreement after each round |", "|---|---|---|"]
    for dataset, by_round in across.items():
        means = [statistics.fmean(r["acc"] for r in rows if r["dataset"] == dataset and r["round"] == n)
                 for n in sorted(by_round)]
        lines.append(f"| {dataset} | " + " ".join(f"{m:.3f}" for m in means) + " | "
                     + " ".join(f"{by_round[n]:.3f}" for n in sorted(by_round)) + " |")
    return "\n".join(lines) + "\n"


def main():
    parser = common.study_parser(__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rows, labelings = [], {}
    for dataset in args.datasets:
        for seed in args.seeds:
            found, labelings[dataset, seed] = rounds_of(dataset, seed, args.rounds)
            rows += found
            print(json.dumps(found), flush=True)
    machine, across = describe(), seed_agreement(labelings)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "selflabel_rounds.json").write_text(json.dumps({"machine": machine, "runs": rows,
                                                               "seed_agreement": across}, indent=2) + "\n")
    (RESULTS / "selflabel_rounds.md").write_text(markdown(rows, across, machine))
    print(markdown(rows, across, machine))


if __name__ == "__main__":
    main()
