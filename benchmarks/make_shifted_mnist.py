"""Write an N-sample MNIST-like data set to a .npy file without holding it in memory:
MNIST digits, cycled, each shifted by up to 2 pixels and given Gaussian noise.

    python benchmarks/make_shifted_mnist.py 1000000 /tmp/mnist-1m.npy

Also writes the labels next to it (NAME.labels.npy), for reference.
"""

import argparse

import numpy as np

from encluster import load_dataset

CHUNK = 50_000


def shifted(images, rng):
    """Each image moved by (dy, dx) in [-2, 2], vacated pixels zero, plus noise (sigma 8)."""
    out = np.zeros_like(images)
    shifts = rng.integers(-2, 3, size=(len(images), 2))
    for (dy, dx) in np.unique(shifts, axis=0):
        sel = (shifts[:, 0] == dy) & (shifts[:, 1] == dx)
        src = images[sel]
        moved = np.zeros_like(src)
        ys, yd = (slice(0, 28 - dy), slice(dy, 28)) if dy >= 0 else (slice(-dy, 28), slice(0, 28 + dy))
        xs, xd = (slice(0, 28 - dx), slice(dx, 28)) if dx >= 0 else (slice(-dx, 28), slice(0, 28 + dx))
        moved[:, yd, xd] = src[:, ys, xs]
        out[sel] = moved
    noisy = out.astype(np.int16) + rng.normal(0, 8, size=out.shape).round().astype(np.int16)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("n_samples", type=int)
    parser.add_argument("path")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    mnist = load_dataset("mnist", scale=False)
    images, labels = mnist.X.reshape(-1, 28, 28), mnist.y
    rng = np.random.default_rng(args.seed)
    out = np.lib.format.open_memmap(args.path, mode="w+", dtype=np.uint8, shape=(args.n_samples, 28, 28))
    for start in range(0, args.n_samples, CHUNK):
        idx = np.arange(start, min(start + CHUNK, args.n_samples)) % len(images)
        out[start : start + len(idx)] = shifted(images[idx], rng)
    out.flush()
    np.save(args.path.removesuffix(".npy") + ".labels.npy", labels[np.arange(args.n_samples) % len(images)])


if __name__ == "__main__":
    main()
