"""Small data and many clusters: the default against k-means on the raw input, method umap and the
previous default, side by side in one run, 3 seeds each.

The sets are built here from MNIST, Fashion-MNIST and scikit-learn's digits and tables, to look like
what users bring: a few hundred images in 20 to 40 groups of 10 to 25 (classes made of rotated or
flipped copies of a digit or garment, as a person's photos are a class of their own), colour images,
small tables. No setting was chosen on them by their labels; labels are used for the scores only.
Each row also records which space the default clustered (its encoding or the scaled input, chosen by
how well its UMAP layouts agree across seeds) and both candidates' ACC, so that how often the
label-free choice picks the better one can be counted.

    python benchmarks/small_data.py                          # results/small_data.{json,md}
    python benchmarks/small_data.py --previous 8dc2616       # with the default of that commit beside it
    python benchmarks/small_data.py --quick --results /tmp/x # tiny, one seed: that the script still runs
    python benchmarks/small_data.py --variants kmeans-raw --previous 8dc2616 --results /tmp/p   # the slow one apart,
    python benchmarks/small_data.py --add /tmp/p/small_data.json    # the rest, tabulated with its rows
    python benchmarks/small_data.py --sets fashion-flipped-20 --variants default-20-neighbours \
        --add benchmarks/results/small_data.json   # an ablation on some sets, tabulated with the full run
                                                   # (a fit run again replaces the added file's same fit)
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import benchmark_parser, describe, machine

HERE = Path(__file__).parent
SEEDS = (0, 1, 2)
IMAGE_SETS = ("digits-rotated-40", "mnist-turned-30", "fashion-flipped-20", "mnist-30-each", "fashion-tinted-30",
              "mnist-100-each", "digits", "mnist-200-each", "tshirt-photos-40", "garment-photos-40")
TABLE_SETS = ("wine", "breast-cancer", "digits-table-20")
VARIANTS = ("default", "default-choose", "default-20-neighbours", "default-float32", "default-cli", "kmeans-raw",
            "umap", "previous-default")
# Not run unless asked for: the previous default needs a commit (--previous); the 20 neighbours are an ablation;
# float32 times the default as it runs on a CPU without bfloat16 (on this one it only approximates that time);
# cli times the whole job a user runs: `encluster run` on the set saved as an .npz, from Python's start to the report.
OPTIONAL_VARIANTS = ("default-20-neighbours", "default-float32", "default-cli", "previous-default")


def _variants(images, y, per_class, transforms, seed=0):
    """Each (class, transform) a class of its own, `per_class` different images each."""
    rng = np.random.default_rng(seed)
    X, labels = [], []
    for c in np.unique(y):
        pool = rng.permutation(np.flatnonzero(y == c))[: per_class * len(transforms)]
        for t, transform in enumerate(transforms):
            X.append(np.stack([transform(images[i]) for i in pool[t * per_class:(t + 1) * per_class]]))
            labels += [c * len(transforms) + t] * per_class
    return np.concatenate(X), np.asarray(labels)


def _photographed(images, y, people, per_person, jitter, kind=None, seed=0):
    """`people` different images (all of class `kind`, or any), each "photographed" `per_person` times on a
    32x32 frame: turned, scaled, shifted, lit brighter or darker, from one side, with noise, as the photos of
    one person differ. Each image is a class: the groups differ in detail, not in kind, as faces do."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    pool = rng.permutation(np.flatnonzero(y == kind) if kind is not None else len(images))[:people]
    centre, ramp = np.array([15.5, 15.5]), np.linspace(-1, 1, 32)[None, :]
    X = []
    for i in pool:
        frame = np.pad(images[i].astype(np.float32) / 255, 2)
        for _ in range(per_person):
            angle, scale = np.deg2rad(rng.uniform(-12, 12) * jitter), 1 + rng.uniform(-0.1, 0.1) * jitter
            turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) / scale
            shift = rng.uniform(-2, 2, 2) * jitter
            photo = ndimage.affine_transform(frame, turn, offset=centre - turn @ centre - shift, order=1)
            photo = np.clip(photo, 0, 1) ** (1 + rng.uniform(-0.3, 0.4) * jitter) * (1 + rng.uniform(-0.4, 0.3) * jitter)
            photo = photo * (1 + rng.uniform(-0.3, 0.3) * jitter * ramp) + rng.normal(0, 6 / 255, photo.shape)
            X.append(np.clip(photo, 0, 1))
    return np.asarray(X, dtype=np.float32), np.repeat(np.arange(people), per_person)


def _tint(channel):
    def tinted(image):
        out = np.zeros(image.shape + (3,), dtype=image.dtype)
        out[..., channel] = image
        return out
    return tinted


def load(name):
    """``(X, y, image_shape)`` of the set `name`: images as (n, height, width[, 3]), tables as rows."""
    from encluster import load_dataset

    def images(dataset, split="all"):
        d = load_dataset(dataset, split=split, scale=False)
        return d.X.reshape(len(d.X), *d.image_shape), d.y

    as_is, upside_down = (lambda a: a), (lambda a: a[::-1])
    if name == "digits-rotated-40":  # 10 digits x 4 quarter turns, 10 each: 400 8x8 (as 40 people x 10 faces)
        X, y = _variants(*images("digits"), 10, [lambda a, r=r: np.rot90(a, r) for r in range(4)])
    elif name == "mnist-turned-30":  # 10 digits x (as is, transposed, upside down), 15 each: 450 28x28
        X, y = _variants(*images("mnist", "test"), 15, [as_is, np.transpose, upside_down])
    elif name == "fashion-flipped-20":  # 10 garments x (as is, upside down), 25 each: 500 28x28
        X, y = _variants(*images("fashion-mnist", "test"), 25, [as_is, upside_down])
    elif name == "mnist-30-each":  # 10 digits, 30 each: 300 28x28
        X, y = _variants(*images("mnist", "test"), 30, [as_is])
    elif name == "mnist-100-each":  # 10 digits, 100 each: 1,000 28x28
        X, y = _variants(*images("mnist", "test"), 100, [as_is])
    elif name == "mnist-200-each":  # 10 digits, 200 each: 2,000 28x28, the largest size the time target covers
        X, y = _variants(*images("mnist", "test"), 200, [as_is])
    elif name == "digits":  # scikit-learn's 1,797 8x8 digits, as images
        X, y = images("digits")
    elif name == "fashion-tinted-30":  # 10 garments x (red, green, blue), 15 each: 450 28x28x3
        X, y = _variants(*images("fashion-mnist", "test"), 15, [_tint(0), _tint(1), _tint(2)])
    elif name == "tshirt-photos-40":  # 40 T-shirts, 10 "photos" each: 400 32x32, as 40 people's faces
        X, y = _photographed(*images("fashion-mnist", "test"), 40, 10, jitter=0.5, kind=0)
    elif name == "garment-photos-40":  # 40 garments of any kind, 10 "photos" each, moved and lit more: 400 32x32
        X, y = _photographed(*images("fashion-mnist", "test"), 40, 10, jitter=0.7)
    elif name == "digits-table-20":  # digits' 64 pixels as a table's columns, 10 digits x (as is, mirrored), 50 each
        X, y = _variants(*images("digits"), 50, [as_is, lambda a: a[:, ::-1]])
        return X.reshape(len(X), -1).astype(np.float64), y, None
    elif name == "quick-images":  # 60 digits, 6 classes: for --quick
        X, y = _variants(*images("digits"), 10, [as_is])
        keep = y < 6
        return X[keep], y[keep], X.shape[1:]
    elif name in ("wine", "breast-cancer"):
        import sklearn.datasets

        bunch = getattr(sklearn.datasets, f"load_{name.replace('-', '_')}")()
        return bunch.data, bunch.target, None
    else:
        raise KeyError(name)
    return X, y, X.shape[1:]


def run_one(name, variant, seed):
    """One fit of `variant` on set `name`: its scores, seconds and what the default chose."""
    from sklearn.cluster import KMeans

    from encluster import EncodingClusterer, score
    from encluster.scaling import Scaler

    X, y, image_shape = load(name)
    k = len(np.unique(y))
    started = time.perf_counter()
    record = {}
    if variant == "kmeans-raw":  # the baseline `encluster run` prints: k-means, 10 restarts, on min-max scaled input
        rows = X.reshape(len(X), -1)
        labels = KMeans(k, n_init=10, random_state=seed).fit_predict(Scaler.fit(rows, "minmax").transform(rows))
    elif variant == "default-cli":
        labels, record = run_cli(X, y, k, seed)
    else:
        # default-choose: the default with space="choose", the encoding or the input by the layouts' agreement;
        # default-20-neighbours: the default with N2D's 20 neighbours at every size, as before n_neighbors="auto";
        # default-float32: the default without bfloat16.
        extra = {"default-choose": {"space": "choose"}, "default-20-neighbours": {"n_neighbors": 20},
                 "default-float32": {"precision": "float32"}}.get(variant, {})
        est = EncodingClusterer(k, preset="umap" if variant == "umap" else "default", random_state=seed,
                                **extra).fit(X)
        labels = est.labels_
        choice = getattr(est, "space_choice_", None)
        record = {"method": est.method_, "timings": {stage: round(s, 1) for stage, s in est.timings_.items()},
                  "selflabel_steps": (est.selflabel_ or {}).get("steps"),
                  "space_choice": choice and {**choice, "acc": {space: round(score(y, found)["acc"], 4) for
                                                                space, found in est.candidate_labels_.items()}}}
    seconds = time.perf_counter() - started
    scores = score(y, labels)
    return {"set": name, "variant": variant, "seed": seed, "n": int(len(X)), "k": int(k),
            "shape": None if image_shape is None else list(image_shape), "features": int(np.prod(X.shape[1:])),
            "acc": round(scores["acc"], 4), "nmi": round(scores["nmi"], 4), "seconds": round(seconds, 1), **record}


def run_cli(X, y, k, seed):
    """`encluster run` on `X` and `y` saved as an .npz, in a process of its own (so the time a user waits
    includes Python's start, the checkpoints, the baseline, the plots and the report); its labels, and
    the stages' seconds its metrics.json records (what is not among them: start, imports, the report)."""
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "set.npz"
        np.savez(data, X=X, y=y)
        subprocess.run([sys.executable, "-m", "encluster", "run", "--dataset", str(data), "--clusters", str(k),
                        "--seed", str(seed), "--out", str(Path(folder) / "run"), "-q"], check=True,
                       capture_output=True)
        metrics = json.loads((Path(folder) / "run" / "metrics.json").read_text())
        return np.load(Path(folder) / "run" / "assignments.npy"), {"timings": metrics["timings"],
                                                                   "total_seconds": metrics["total_seconds"]}


def run_elsewhere(name, seed, source):
    """The default of another checkout (`source`: its src folder), in a process of its own."""
    out = subprocess.run([sys.executable, __file__, "--one", name, "default", str(seed)], capture_output=True,
                         text=True, check=True, env={**os.environ, "PYTHONPATH": f"{source}{os.pathsep}{HERE}"})
    row = json.loads(out.stdout.strip().splitlines()[-1])
    return {**row, "variant": "previous-default"}


def previous_source(commit):
    """A checkout of `commit` in a temporary folder, for the previous default."""
    folder = Path(tempfile.mkdtemp(prefix="encluster-previous-"))
    subprocess.run(["git", "-C", str(HERE), "worktree", "add", "--detach", str(folder), commit], check=True,
                   capture_output=True)
    return folder / "src"


def markdown(rows, seeds, previous):
    by = {}
    for r in rows:
        by.setdefault((r["set"], r["variant"]), []).append(r)
    order = IMAGE_SETS + TABLE_SETS  # the sets in their usual order, whichever run added them
    sets = sorted(dict.fromkeys(r["set"] for r in rows), key=lambda s: order.index(s) if s in order else len(order))
    variants = [v for v in VARIANTS if any((s, v) in by for s in sets)]
    lines = [f"# Small data and many clusters ({describe()})", "",
             f"`python benchmarks/small_data.py {' '.join(sys.argv[1:])}`".replace(" `", "`") + f": seeds "
             f"{', '.join(map(str, seeds))}; ACC mean ± std over seeds (median seconds of one fit). previous-default: "
             f"the default at {previous or '-'} (with --add: run apart, `--variants kmeans-raw --previous "
             f"{previous or 'COMMIT'}`, and its rows added). kmeans-raw: the baseline `encluster run` prints.", "",
             "| set | samples | classes | " + " | ".join(variants) + " | default − k-means | default-choose's space |",
             "|---|---|---|" + "---|" * len(variants) + "---|---|"]
    picks = []
    for s in sets:
        first = next(r for r in rows if r["set"] == s)
        cells = []
        for v in variants:
            mine = by.get((s, v), [])
            accs = [r["acc"] for r in mine]
            cells.append("" if not accs else f"{statistics.mean(accs):.3f} ± {statistics.pstdev(accs):.3f} "
                         f"({statistics.median(r['seconds'] for r in mine):.0f} s)")
        gap = ""
        if (s, "default") in by and (s, "kmeans-raw") in by:
            gap = f"{statistics.mean(r['acc'] for r in by[(s, 'default')]) - statistics.mean(r['acc'] for r in by[(s, 'kmeans-raw')]):+.3f}"
        chosen = [r["space_choice"] for r in by.get((s, "default-choose"), []) if r.get("space_choice")]
        picks += chosen
        where = ", ".join(c["chosen"] for c in chosen) or "(no choice)"
        lines.append(f"| {s} | {first['n']:,} | {first['k']} | " + " | ".join(cells) + f" | {gap} | {where} |")
    right = [c for c in picks if c["acc"][c["chosen"]] >= max(c["acc"].values())]
    if not picks:
        return "\n".join(lines) + "\n"
    mean = {space: statistics.mean(c["acc"][space] for c in picks) for space in ("encoding", "input")}
    lines += ["", f"default-choose's label-free choice of space picked the candidate of higher ACC (or equal) in "
              f"{len(right)} of {len(picks)} fits; before self-labelling, its picks average ACC "
              f"{statistics.mean(c['acc'][c['chosen']] for c in picks):.3f}, the encoding's {mean['encoding']:.3f}, "
              f"the input's {mean['input']:.3f}, the better of the two {statistics.mean(max(c['acc'].values()) for c in picks):.3f}. "
              "Per fit: " + "; ".join(
                  f"{c['chosen']} (agreement {c['agreement']['encoding']:.3f} / {c['agreement']['input']:.3f}, ACC "
                  f"{c['acc']['encoding']:.3f} / {c['acc']['input']:.3f})" for c in picks) + " (encoding / input)."]
    return "\n".join(lines) + "\n"


def main():
    parser = benchmark_parser(__doc__)
    parser.add_argument("--sets", nargs="+", default=list(IMAGE_SETS + TABLE_SETS))
    parser.add_argument("--variants", nargs="+", default=[v for v in VARIANTS if v not in OPTIONAL_VARIANTS],
                        choices=VARIANTS)
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    parser.add_argument("--previous", metavar="COMMIT", help="also run the default of this commit (git worktree)")
    parser.add_argument("--add", type=Path, nargs="+", default=[], metavar="JSON",
                        help="also tabulate the rows of earlier runs' small_data.json (e.g. the previous default, "
                        "run apart)")
    parser.add_argument("--one", nargs=3, metavar=("SET", "VARIANT", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one[0], args.one[1], int(args.one[2]))))
        return 0
    if args.quick:
        args.sets, args.seeds = ["quick-images", "wine"], [0]
    variants = args.variants + (["previous-default"] if args.previous else [])
    source = previous_source(args.previous) if args.previous else None
    added = {(r["set"], r["variant"], r["seed"]): r for path in args.add for r in json.loads(path.read_text())["rows"]}
    args.previous = args.previous or next((json.loads(path.read_text())["previous"] for path in args.add
                                           if json.loads(path.read_text())["previous"]), None)
    rows = []
    for name in args.sets:
        for variant in variants:
            for seed in args.seeds:
                row = run_elsewhere(name, seed, source) if variant == "previous-default" else run_one(name, variant,
                                                                                                        seed)
                rows.append(row)
                added.pop((name, variant, seed), None)  # a fit run now replaces the same fit of an earlier run
                print(json.dumps(row), flush=True)
    rows += added.values()
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "small_data.json").write_text(json.dumps({"machine": machine(), "previous": args.previous,
                                                              "seeds": args.seeds, "rows": rows}, indent=1))
    (args.results / "small_data.md").write_text(markdown(rows, args.seeds, args.previous))
    print(markdown(rows, args.seeds, args.previous))
    return 0


if __name__ == "__main__":
    sys.exit(main())
