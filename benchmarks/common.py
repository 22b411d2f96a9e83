"""What the benchmarks (maintained, in this folder) and the studies (finished, in ../studies) share:
the machine a result was measured on, the image sets they run on, the seeds' agreement, and the
results writer. A study imports it with ``sys.path`` pointing here."""

import argparse
import json
import os
import platform
import statistics
from pathlib import Path

import numpy as np
import torch

from encluster.provenance import cpu_name

RESULTS = Path(__file__).parent / "results"


def benchmark_parser(description):
    """A maintained benchmark's command line: its own options go on top of --quick (tiny data, one
    repeat: that the script still runs, as CI checks) and --results (where its files go)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny data, one repeat: only that the script runs")
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder for the results files (default: "
                        "benchmarks/results)")
    return parser


# The image sets, by name: MNIST and Fashion-MNIST whole, and sets of other sizes and shapes built from them, so
# that a setting that only suits MNIST-70k shows. Each is ``(X, y, image_shape)``, X raw (uint8 or floats in [0, 1]).
IMAGE_SETS = ("mnist", "mnist-test", "mnist-16x16", "mnist-16x16-filled", "fashion-mnist", "fashion-10k", "digits")
SMALL_IMAGE_SETS = ("mnist-test", "mnist-16x16", "fashion-10k", "digits")


def study_parser(description):
    """A command line for a study of the small sets: --datasets (default all four) and --seeds (0 1 2)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(SMALL_IMAGE_SETS), choices=IMAGE_SETS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    return parser


def load_image_set(name):
    """``(X, y, image_shape)`` of the image set `name` (one of `IMAGE_SETS`), X raw."""
    from encluster import load_dataset

    if name == "mnist-test":  # MNIST's 10,000 test images alone
        d = load_dataset("mnist", split="test", scale=False)
        return d.X, d.y, d.image_shape
    if name == "mnist-16x16":  # 10,000 of MNIST's training images (seeded), shrunk to 16x16 by area averaging
        import torch

        d = load_dataset("mnist", split="train", scale=False)
        keep = np.sort(np.random.default_rng(0).choice(len(d.X), 10_000, replace=False))
        small = torch.nn.functional.interpolate(torch.as_tensor(d.X[keep].reshape(-1, 1, 28, 28)).float(),
                                                size=(16, 16), mode="area")
        return (small.reshape(len(keep), -1).numpy() / 255).astype(np.float32), d.y[keep], (16, 16)
    if name == "mnist-16x16-filled":  # 1,100 of MNIST's training images per digit (seeded), each cut to its ink's
        import torch                  # bounding box and stretched to fill 16x16, as USPS's 11,000 digits are

        d = load_dataset("mnist", split="train", scale=False)
        rng = np.random.default_rng(0)
        keep = np.sort(np.concatenate([rng.choice(np.flatnonzero(d.y == c), 1_100, replace=False) for c in range(10)]))
        images = d.X[keep].reshape(-1, 28, 28)
        filled = []
        for image in images:
            rows, cols = np.flatnonzero(image.any(axis=1)), np.flatnonzero(image.any(axis=0))
            ink = torch.as_tensor(image[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]).float()[None, None]
            filled.append(torch.nn.functional.interpolate(ink, size=(16, 16), mode="bilinear", align_corners=False))
        X = torch.cat(filled).clamp(0, 255).reshape(len(keep), -1).numpy() / 255
        return X.astype(np.float32), d.y[keep], (16, 16)
    if name == "fashion-10k":  # 10,000 of Fashion-MNIST's 70,000 (seeded)
        d = load_dataset("fashion-mnist", scale=False)
        keep = np.sort(np.random.default_rng(0).choice(len(d.X), 10_000, replace=False))
        return d.X[keep], d.y[keep], d.image_shape
    d = load_dataset(name, scale=False)
    return d.X, d.y, d.image_shape


def machine():
    return {"cpu": cpu_name(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "torch": torch.__version__}


def describe():
    m = machine()
    return f"{m['cpu']}, {m['cores']} cores, Python {m['python']}, torch {m['torch']}"


def seeds_agreement(labelings):
    """Mean adjusted Rand index over every pair of seeds' clusterings of the same samples (1: the same
    clustering): how reproducible a method is, measured without labels; None for one seed."""
    from sklearn.metrics import adjusted_rand_score

    pairs = [(a, b) for i, a in enumerate(labelings) for b in labelings[i + 1:]]
    return statistics.mean(adjusted_rand_score(a, b) for a, b in pairs) if pairs else None


def write_results(folder, name, payload, markdown):
    """`payload` (with the machine added) as ``folder/name.json`` and `markdown` as ``folder/name.md``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps({"machine": machine(), **payload}, indent=1) + "\n")
    (folder / f"{name}.md").write_text(markdown if markdown.endswith("\n") else markdown + "\n")
