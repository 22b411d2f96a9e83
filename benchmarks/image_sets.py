"""The image sets the self-labelling benchmarks run on, by name: MNIST and Fashion-MNIST whole,
and sets of other sizes and shapes built from them, so that a setting that only suits MNIST-70k
shows. Each is ``(X, y, image_shape)``, X raw (uint8 or floats in [0, 1])."""

import numpy as np

NAMES = ("mnist", "mnist-test", "mnist-16x16", "fashion-mnist", "fashion-10k", "digits")
SMALL = ("mnist-test", "mnist-16x16", "fashion-10k", "digits")


def study_parser(description):
    """A command line for a study of the small sets: --datasets (default all four) and --seeds (0 1 2)."""
    import argparse

    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(SMALL), choices=NAMES)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    return parser


def load(name):
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
    if name == "fashion-10k":  # 10,000 of Fashion-MNIST's 70,000 (seeded)
        d = load_dataset("fashion-mnist", scale=False)
        keep = np.sort(np.random.default_rng(0).choice(len(d.X), 10_000, replace=False))
        return d.X[keep], d.y[keep], d.image_shape
    d = load_dataset(name, scale=False)
    return d.X, d.y, d.image_shape
