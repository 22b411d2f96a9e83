"""Would a better-trained classifier lift self-labelling, at the same 6,000 steps? Chosen without labels.

For each image set and seed the default's first stages run once (self-labelling off); a tenth of the
sure members (seeded) is held out, and the classifier is trained on the rest, once as it was before
label smoothing (``plain``) and once for each variant of it:

- ``ema``: the classifier that relabels is an exponential moving average of the weights over the
  steps (decay 0.999, as in mean-teacher and FixMatch), not the last step's weights;
- ``batchnorm``: batch normalisation after each convolution;
- ``dropout``: dropout (0.5) before the last layer, LeNet's regulariser;
- ``smoothing``: label smoothing 0.1 (the sure members' clusters are not all right), the default's
  `selflabel_smoothing` since this study; ``smoothing-0.2``: 0.2;
- ``tta``: the plain classifier, relabelling with its mean softmax over the image and its four
  one-pixel shifts (5x the relabelling's time, no training change).

Two criteria are label-free: how often the classifier agrees with the clustering on the held-out
sure members, and how well the seeds' relabelled clusters agree with each other (mean ARI over
pairs of seeds). ACC before and after relabelling every sample is printed beside them, for
information only: no choice reads it.

    python studies/selflabel_classifier.py --datasets mnist-test mnist --seeds 0 \
        --variants plain ema batchnorm dropout smoothing tta          # results/selflabel_classifier.{json,md}
    python studies/selflabel_classifier.py --variants plain smoothing smoothing-0.2 \
        --name selflabel_smoothing                                    # the four small sets, seeds 0-2
"""

import dataclasses
import json
import statistics
import time
from pathlib import Path

import numpy as np

import sys
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))  # the shared helpers: common.py
import common
from common import describe, machine, seeds_agreement

RESULTS = Path(__file__).parent / "results"
# Each variant's added layers (None: the classifier as it is) and label smoothing.
VARIANTS = {"plain": (None, 0.0), "ema": (None, 0.0), "batchnorm": ("batchnorm", 0.0), "dropout": ("dropout", 0.0),
            "smoothing": (None, 0.1), "smoothing-0.2": (None, 0.2), "tta": (None, 0.0)}
EMA_DECAY = 0.999


def variant_classifier(name, base):
    """`selflabel.Classifier` with the variant's layers added (the plain class for the others)."""
    from torch import nn

    layers_added = VARIANTS[name][0]

    class Variant(base):
        def __init__(self, spec):
            super().__init__(spec)
            if spec.image_shape is None:
                return
            layers = list(self.features)
            if layers_added == "batchnorm":
                out = []
                for layer in layers:
                    out.append(layer)
                    if isinstance(layer, nn.Conv2d):
                        out.append(nn.BatchNorm2d(layer.out_channels))
                self.features = nn.Sequential(*out)
            elif layers_added == "dropout":
                self.features = nn.Sequential(*layers, nn.Dropout(0.5))

    return base if layers_added is None else Variant


def train(name, data, taught, targets, n_clusters, config, seed):
    """The classifier of variant `name`, trained as `selflabel.fit` trains the default's."""
    import torch
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    from encluster.distributed import current
    from encluster.stages import selflabel

    network, optimizer, averaged = variant_classifier(name, selflabel.Classifier), selflabel.adam, {}
    if name == "ema":
        class Averaged(network):
            def __init__(self, spec):
                super().__init__(spec)
                averaged["model"] = AveragedModel(self, multi_avg_fn=get_ema_multi_avg_fn(EMA_DECAY), use_buffers=True)
                averaged["source"] = self

        def adam_updating_average(parameters, learning_rate):
            updating = selflabel.adam(parameters, learning_rate)
            updating.register_step_post_hook(lambda *_: averaged["model"].update_parameters(averaged["source"]))
            return updating

        network, optimizer = Averaged, adam_updating_average
    config = dataclasses.replace(config, smoothing=VARIANTS[name][1])
    classifier, _ = selflabel.fit(data, taught, targets, n_clusters, config, seed=seed, device=torch.device("cpu"),
                                  group=current(), network=network, optimizer=optimizer)
    if name == "ema":
        return averaged["model"].module.eval()
    return classifier


def relabel(name, classifier, data, shape):
    """Every sample's cluster by the classifier; for ``tta`` the mean softmax over 5 shifted copies."""
    import torch

    from encluster.stages import selflabel
    from encluster.training import apply_in_batches

    if name != "tta":
        return selflabel.classify(classifier, data)
    height, width = shape[:2]

    def voted(batch):
        images = classifier.as_images(batch)
        total = 0
        for dy, dx in ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)):
            theta = torch.tensor([[1.0, 0, 2 * dx / width], [0, 1.0, 2 * dy / height]]).expand(len(batch), 2, 3)
            grid = torch.nn.functional.affine_grid(theta, list(images.shape), align_corners=False)
            moved = torch.nn.functional.grid_sample(images, grid, padding_mode="border", align_corners=False)
            total = total + classifier(moved.permute(0, 2, 3, 1).reshape(batch.shape)).softmax(dim=1)
        return total

    with torch.no_grad():
        return apply_in_batches(voted, data).argmax(axis=1).astype(np.int64)


def study(dataset, seed, variants):
    from encluster import EncodingClusterer, score
    from encluster.params import take
    from encluster.scaling import ScaledRows
    from encluster.stages import selflabel

    X, y, shape = common.load_image_set(dataset)
    clock = time.perf_counter()
    est = EncodingClusterer(10, random_state=seed, selflabel="off").fit(X, image_shape=shape)
    first = time.perf_counter() - clock
    data = ScaledRows(X.reshape(len(X), -1), est.scaler_)
    members = selflabel.sure_members_of(est.embedding_, est.codes_, est.labels_, est.n_clusters_, 10, est.seed_)
    order = np.random.default_rng(seed).permutation(len(members))
    held, taught = np.sort(members[order[: len(members) // 10]]), np.sort(members[order[len(members) // 10:]])
    config = selflabel.config(take(selflabel.SelfLabelSettings, {**est.resolved_params(), "selflabel": "on"}), shape,
                              data.shape[1], est.training_.precision, est.embedding_.n_neighbors,
                              len(X) / est.n_clusters_)
    rows, labelings, plain = [], {}, None
    acc_before = round(score(y, est.labels_)["acc"], 4)
    for name in variants:
        clock = time.perf_counter()
        if name == "tta" and plain is not None:
            classifier = plain
        else:
            classifier = train("plain" if name == "tta" else name, data, taught, est.labels_[taught],
                               est.n_clusters_, config, est.seed_)
        if name == "plain":
            plain = classifier
        labels = labelings[name] = relabel(name, classifier, data, shape)
        rows.append({"dataset": dataset, "n": len(X), "seed": seed, "variant": name,
                     "held_out_agreement": round(float((labels[held] == est.labels_[held]).mean()), 5),
                     "seconds": round(time.perf_counter() - clock, 1), "sure_members": int(len(members)),
                     "acc_before": acc_before, "acc_after": round(score(y, labels)["acc"], 4),
                     "first_stage_seconds": round(first, 1)})
        print(json.dumps(rows[-1]), flush=True)
    return rows, labelings


def write(name, rows, agreement, variants):
    """The results as `RESULTS`/`name`.json and .md; `agreement`: the seeds' agreement by (data set, variant)."""
    datasets, seeds = list(dict.fromkeys(r["dataset"] for r in rows)), sorted({r["seed"] for r in rows})
    lines = [f"| {r['dataset']} | {r['seed']} | {r['variant']} | {r['held_out_agreement']:.4f} | {r['seconds']:.0f} | "
             f"{r['acc_before']:.4f} | {r['acc_after']:.4f} |" for r in rows]
    means = []
    for dataset in datasets:
        for variant in variants:
            mine = [r for r in rows if r["dataset"] == dataset and r["variant"] == variant]
            agrees = agreement.get((dataset, variant))
            means.append(f"| {dataset} | {variant} | {len(mine)} | "
                         f"{statistics.mean(r['held_out_agreement'] for r in mine):.4f} | "
                         f"{'—' if agrees is None else f'{agrees:.4f}'} | "
                         f"{statistics.median(r['seconds'] for r in mine):.0f} | "
                         f"{statistics.mean(r['acc_after'] for r in mine):.4f} |")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(
        {"machine": machine(), "ema_decay": EMA_DECAY, "rows": rows,
         "seeds_agreement": [{"dataset": d, "variant": v, "ari": a} for (d, v), a in agreement.items()]}, indent=1))
    command = (f"python studies/selflabel_classifier.py --datasets {' '.join(datasets)} --seeds "
               f"{' '.join(map(str, seeds))} --variants {' '.join(variants)} --name {name}")
    text = [f"# Self-labelling classifier variants, chosen without labels ({describe()})", "",
            f"`{command}`: first stages of the default, a tenth of the sure members held out, the classifier "
            "(6,000 steps of 128) as it was before label smoothing (plain) and its variants trained on the rest. The "
            "criteria are the held-out agreement and the seeds' agreement (mean ARI over pairs of seeds); ACC is "
            "shown, never used.",
            "", "| data | variant | seeds | mean held-out agreement | seeds' agreement | median s | mean ACC after |",
            "|---|---|---|---|---|---|---|",
            *means, "", "| data | seed | variant | held-out agreement | s | ACC before | ACC after |",
            "|---|---|---|---|---|---|---|", *lines]
    (RESULTS / f"{name}.md").write_text("\n".join(text) + "\n")
    print("\n".join(text))


def main():
    parser = common.study_parser(__doc__)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--name", default="selflabel_classifier", help="results file name (without extension)")
    args = parser.parse_args()
    rows, labelings = [], {}
    for dataset in args.datasets:
        for seed in args.seeds:
            more, labels = study(dataset, seed, args.variants)
            rows += more
            for name in args.variants:
                labelings.setdefault((dataset, name), []).append(labels[name])
    write(args.name, rows, {key: seeds_agreement(value) for key, value in labelings.items()}, args.variants)


if __name__ == "__main__":
    main()
