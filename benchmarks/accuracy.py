"""Accuracy benchmark: data sets x methods x seeds, ours beside the peer library ClustPy.

Each (data set, method, seed) runs in its own process, so its peak memory is its own;
results are appended to a JSON-lines file as they finish (rerunning skips what is there,
`--rerun` replaces it; a run given --epochs is a row of its own, beside the preset's), then
summarised as mean +- std and worst seed of ACC / NMI / ARI, median wall time and peak
memory, into benchmarks/results/accuracy.json and .md.

    python benchmarks/accuracy.py                                   # everything, 5 seeds
    python benchmarks/accuracy.py --datasets digits --seeds 0 1 2   # a quick look
    python benchmarks/accuracy.py --methods n2d clustpy-n2d --epochs 40 --clustpy-python ENV/bin/python
    python benchmarks/accuracy.py --quick --results /tmp/x          # digits, pixels and umap, one seed
    python benchmarks/accuracy.py --datasets mnist --methods default --rerun   # after changing a preset
    python benchmarks/accuracy.py --datasets mnist-test mnist-16x16 fashion-10k digits --methods default \
        clustpy-n2d --seeds 0 1 2 --clustpy-python ENV/bin/python              # sets beyond MNIST-70k

Data sets (`common.py`): MNIST (70,000), its 10,000 test images alone, 10,000 MNIST images
shrunk to 16x16, 11,000 cut to their ink and stretched to fill 16x16 as USPS's digits are,
Fashion-MNIST (70,000) and a 10,000-image subset of it, and scikit-learn's 8x8 digits. The
default sees each as images (its self-labelling CNN needs the shape).

Methods: pixels (k-means on the scaled pixels, n_init=10), seed, umap, n2d, dec, idec,
default (our presets, `EncodingClusterer`), default-one-layout (the default with a single UMAP
layout, umap_layouts 1), default-umap-100-epochs (the default with 100 UMAP passes at every size,
as before umap_epochs by_size), previous-default (the default before self-labelling: 30 epochs, selflabel
off), and clustpy-n2d / clustpy-dec /
clustpy-idec (ClustPy's own implementations: same data, same autoencoder
d-500-500-2000-10, same number of pretraining epochs, UMAP n_neighbors 20 / min_dist 0
for N2D, 20 clustering epochs for DEC/IDEC). ClustPy is not a dependency of encluster:
install it in a separate environment (``pip install --no-deps clustpy torchvision==0.28.0
pandas tqdm`` beside the CPU torch) and pass its interpreter with --clustpy-python.
ClustPy imports torchvision, whose PyPI wheel does not load its compiled operators
beside the CPU torch wheel; the child defines the two operator schemas it needs first.

The default's rows come with a second one, "default, first stages": the same runs' clusters
before self-labelling relabelled them (the default's shorter pretraining, no classifier), timed
without the self-labelling stage.

Nothing here looks at labels except the scoring at the end.
"""

import argparse
import json
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import common
from common import describe

OURS = ("pixels", "seed", "umap", "n2d", "dec", "idec", "default", "default-one-layout", "default-umap-100-epochs",
        "previous-default")
# Variants of the default preset, by name: before self-labelling (and before its pretraining was shortened to pay
# for it), run side by side with today's for the time ratio; and with a single UMAP layout, as before the layouts'
# agreement chose among several.
VARIANTS = {"previous-default": {"epochs": 30, "selflabel": "off"}, "default-one-layout": {"umap_layouts": 1},
            "default-umap-100-epochs": {"umap_epochs": 100}}
CLUSTPY = ("clustpy-n2d", "clustpy-dec", "clustpy-idec")
DATASETS = common.IMAGE_SETS
FIRST_STAGES = "default, first stages"


def run_one(dataset, method, seed, epochs):
    """Fit one method on one data set with one seed; return its scores and costs."""
    from encluster import EncodingClusterer, score
    from encluster.stages.cluster import kmeans

    X, y, shape = common.load_image_set(dataset)
    started = time.perf_counter()
    settings, stages, before = {}, {}, None
    if method == "pixels":
        labels, _ = kmeans(X.astype("float32") / (255 if X.dtype.kind == "u" else 1), 10, n_init=10,
                           random_state=seed)
        settings = {"n_init": 10}
    elif method in CLUSTPY:
        labels, settings = _run_clustpy(method, X, seed, epochs)
    else:
        overrides = {"epochs": epochs} if epochs and method in ("n2d", "dec", "idec", "default") else {}
        if method in VARIANTS:
            method_preset, overrides = "default", VARIANTS[method]
        else:
            method_preset = method
        est = EncodingClusterer(10, preset=method_preset, random_state=seed, **overrides).fit(X, image_shape=shape)
        labels, stages = est.labels_, {k: round(v, 1) for k, v in est.timings_.items()}
        settings = {k: v for k, v in est.resolved_params().items() if not isinstance(v, dict)}
        if est.selflabel_ is not None:
            before = {**score(y, est.clustered_labels_), "moved": est.selflabel_["moved"],
                      "sure_members": est.selflabel_["sure_members"]}
    seconds = time.perf_counter() - started
    scores = score(y, labels)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"dataset": dataset, "method": method, "seed": seed, "epochs": epochs, "n_samples": int(len(X)),
            "acc": scores["acc"], "nmi": scores["nmi"], "ari": scores["ari"], "seconds": round(seconds, 1),
            "peak_mb": round(peak_mb), "machine": describe(), "stages": stages, "settings": settings,
            "before_selflabel": before}


def _run_clustpy(method, X, seed, epochs):
    import numpy as np
    import torch

    # torchvision's PyPI wheel cannot register its C++ operators beside the CPU torch wheel;
    # ClustPy never calls them, it only needs their schemas to exist at import time.
    lib = torch.library.Library("torchvision", "DEF")
    for schema in ("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
                   "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"):
        lib.define(schema)
    import umap
    from clustpy.deep import DEC, IDEC, N2D

    X = X.reshape(len(X), -1).astype(np.float32) / (255 if X.dtype.kind == "u" else 1)
    epochs = epochs or 40
    common = {"n_clusters": 10, "pretrain_epochs": epochs, "batch_size": 256, "embedding_size": 10,
              "random_state": seed}
    if method == "clustpy-n2d":
        manifold = {"n_components": 10, "n_neighbors": 20, "min_dist": 0.0}
        model = N2D(**common, manifold_class=umap.UMAP, manifold_params=manifold)
        settings = {**common, "manifold": "umap", **manifold}
    else:
        model = (DEC if method == "clustpy-dec" else IDEC)(**common, clustering_epochs=20)
        settings = {**common, "clustering_epochs": 20}
    model.fit(X)
    return np.asarray(model.labels_), {k: v for k, v in settings.items() if k != "random_state"}


def identity(row):
    """What a logged run is a run of: data set, method, seed and the --epochs it was given (None: the preset's)."""
    return row["dataset"], row["method"], row["seed"], row.get("epochs")


def first_stages(row):
    """A default run as it stood before self-labelling: its clustering's scores, timed without the stage."""
    before = row["before_selflabel"]
    return {**row, "method": FIRST_STAGES, "acc": before["acc"], "nmi": before["nmi"], "ari": before["ari"],
            "seconds": round(row["seconds"] - row["stages"].get("selflabel", 0), 1)}


def summarise(rows):
    groups = {}
    rows = rows + [first_stages(r) for r in rows if r.get("before_selflabel") and r["method"] == "default"]
    for row in rows:
        groups.setdefault((row["dataset"], row["method"], row.get("epochs")), []).append(row)
    summary = []
    order = [*OURS, FIRST_STAGES, *CLUSTPY]
    for dataset, method, epochs in sorted(groups, key=lambda k: (DATASETS.index(k[0]), order.index(k[1]), k[2] or 0)):
        runs = groups[dataset, method, epochs]
        entry = {"dataset": dataset, "method": method, "epochs": epochs, "seeds": sorted(r["seed"] for r in runs)}
        for name in ("acc", "nmi", "ari"):
            values = [r[name] for r in runs]
            entry[name] = {"mean": statistics.fmean(values), "std": statistics.pstdev(values), "worst": min(values)}
        entry["median_seconds"] = statistics.median(r["seconds"] for r in runs)
        entry["peak_mb"] = max(r["peak_mb"] for r in runs)
        entry["machines"] = sorted({r["machine"] for r in runs})
        entry["settings"] = runs[0]["settings"]
        summary.append(entry)
    return summary


def markdown(summary):
    lines = ["| data set | method | seeds | ACC mean ± std | ACC worst | NMI mean ± std | ARI mean ± std | "
             "median s | peak MB | CPU |", "|---" * 10 + "|"]
    for e in summary:
        method = e["method"] + (f", {e['epochs']} epochs" if e["epochs"] else "")
        lines.append(f"| {e['dataset']} | {method} | {len(e['seeds'])} | {e['acc']['mean']:.3f} ± "
                     f"{e['acc']['std']:.3f} | {e['acc']['worst']:.3f} | {e['nmi']['mean']:.3f} ± "
                     f"{e['nmi']['std']:.3f} | {e['ari']['mean']:.3f} ± {e['ari']['std']:.3f} | "
                     f"{e['median_seconds']:.0f} | {e['peak_mb']} | {' / '.join(map(cpu, e['machines']))} |")
    return "\n".join(lines) + "\n"


def cpu(machine):
    """The CPU's name alone (with its family, model and stepping where recorded), for a table column:
    machines in one log differ in little else."""
    return re.match(r"(?:\([^)]*\)|[^,(])*", machine).group(0).strip()


def main():
    parser = common.benchmark_parser(__doc__)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--methods", nargs="+", default=[*OURS, *CLUSTPY], choices=[*OURS, *CLUSTPY])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--epochs", type=int, help="pretraining epochs for every deep method (default: each "
                        "preset's own; ClustPy then gets 40, the n2d/dec/idec presets' number)")
    parser.add_argument("--clustpy-python", default=sys.executable, help="interpreter that has ClustPy")
    parser.add_argument("--log", type=Path, help="every run, one JSON line each (default: accuracy.jsonl in --results)")
    parser.add_argument("--rerun", action="store_true", help="run the chosen data sets x methods x seeds again "
                        "even where the log has them (after a preset changed); their old rows are replaced")
    parser.add_argument("--one", nargs=3, metavar=("DATASET", "METHOD", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one[0], args.one[1], int(args.one[2]), args.epochs)))
        return
    if args.quick:
        args.datasets, args.methods, args.seeds = ["digits"], ["pixels", "umap"], [0]
    args.results.mkdir(parents=True, exist_ok=True)
    args.log = args.log or args.results / "accuracy.jsonl"
    logged = [json.loads(line) for line in args.log.read_text().splitlines()] if args.log.exists() else []
    if args.rerun:
        chosen = {(d, m, s, args.epochs) for d in args.datasets for m in args.methods for s in args.seeds}
        logged = [r for r in logged if identity(r) not in chosen]
        args.log.write_text("".join(json.dumps(r) + "\n" for r in logged))
    done = {identity(r) for r in logged}
    for dataset in args.datasets:
        for method in args.methods:
            for seed in args.seeds:
                if (dataset, method, seed, args.epochs) in done:
                    continue
                python = args.clustpy_python if method in CLUSTPY else sys.executable
                command = [python, __file__, "--one", dataset, method, str(seed)]
                command += ["--epochs", str(args.epochs)] if args.epochs else []
                result = subprocess.run(command, capture_output=True, text=True)
                if result.returncode != 0:
                    print(f"{dataset} {method} seed {seed} failed:\n{result.stderr[-2000:]}", file=sys.stderr)
                    continue
                row = json.loads(result.stdout.strip().splitlines()[-1])
                print(json.dumps({k: v for k, v in row.items() if k != "settings"}), flush=True)
                with args.log.open("a") as fh:
                    fh.write(json.dumps(row) + "\n")
    rows = [json.loads(line) for line in args.log.read_text().splitlines()]
    summary = summarise(rows)
    (args.results / "accuracy.json").write_text(json.dumps({"summary": summary, "runs": rows}, indent=2) + "\n")
    (args.results / "accuracy.md").write_text("Each row names the CPU its runs were measured on (all 2 cores, Python "
                                              "and torch as in accuracy.json's runs).\n\n" + markdown(summary))
    print(markdown(summary))


if __name__ == "__main__":
    main()
