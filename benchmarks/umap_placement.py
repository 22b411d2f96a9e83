"""Placing new points in a fitted UMAP embedding: umap-learn's serial layout against ours in blocks
of points placed by threads, in turn on the same points, with a check that all give the same places.

    python benchmarks/umap_placement.py --fit 20000 --new 100000 --repeats 3
    python benchmarks/umap_placement.py --quick --results /tmp/x   # 500 fitted, 2,000 placed, once

The points are 10-d Gaussian blobs (as the default's codes are 10-d); UMAP is fitted on `--fit` of
them (50 layout epochs) and `--new` others are placed by `UmapEmbedding.transform`, whose layout is
swapped for umap-learn's `optimize_layout_euclidean` in the serial rows. Each figure includes the
neighbour search and the memberships, which all variants share. Writes
benchmarks/results/umap_placement.json and .md (median seconds over the repeats, and the ratio).
"""

import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from umap.layouts import optimize_layout_euclidean

sys.path.insert(0, str(Path(__file__).parent))
from common import benchmark_parser, describe, write_results  # noqa: E402

from encluster.stages import embed  # noqa: E402


def umap_learn_serial(start, fixed, rows, cols, epochs_per_sample, a, b, rng_state, epochs):
    """umap-learn's own call, as `transform` made it before blocks were placed in threads."""
    return optimize_layout_euclidean(np.array(start), fixed.copy(), rows, cols, epochs, len(fixed),
                                     epochs_per_sample, a, b, rng_state, 1.0, 0.25, 5, False)


def main():
    parser = benchmark_parser(__doc__)
    parser.add_argument("--fit", type=int, default=20_000)
    parser.add_argument("--new", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.quick:
        args.fit, args.new, args.repeats = 500, 2_000, 1
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(10, 10)) * 5
    blobs = lambda n: (centres[rng.integers(0, 10, n)] + rng.normal(size=(n, 10))).astype(np.float32)  # noqa: E731
    fitted = embed.UmapEmbedding(10, n_neighbors=embed.MAX_AUTO_NEIGHBORS, min_dist=embed.MIN_DIST,
                                  n_epochs=50, random_state=0)
    fitted.fit_transform(blobs(args.fit))
    new = blobs(args.new)
    fitted.transform(new[:1000])  # compile both layouts' kernels before timing
    ours = embed.place
    variants = [("umap-learn, serial", umap_learn_serial, torch.get_num_threads()),
                ("ours, 1 thread", ours, 1), (f"ours, {torch.get_num_threads()} threads", ours, torch.get_num_threads())]
    threads = torch.get_num_threads()
    seconds, places = {name: [] for name, _, _ in variants}, {}
    for _ in range(args.repeats):
        for name, layout, count in variants:  # in turn, so the machine's drift falls on all alike
            torch.set_num_threads(count)
            started = time.perf_counter()
            places[name] = fitted.transform(new, layout=layout)
            seconds[name].append(time.perf_counter() - started)
    torch.set_num_threads(threads)
    reference = places["umap-learn, serial"]
    rows = [{"variant": name, "median_seconds": round(statistics.median(times), 2),
             "seconds": [round(t, 2) for t in times], "same_places": bool(np.array_equal(places[name], reference))}
            for name, times in seconds.items()]
    base = rows[0]["median_seconds"]
    for row in rows:
        row["speedup"] = round(base / row["median_seconds"], 2)
    result = {"machine": describe(), "fit_points": args.fit, "new_points": args.new, "repeats": args.repeats,
              "rows": rows}
    lines = [f"`python benchmarks/umap_placement.py --fit {args.fit} --new {args.new} --repeats {args.repeats}`: "
             f"placing {args.new:,} new 10-d points in a UMAP fitted on {args.fit:,}; {result['machine']}.", "",
             "| layout | median s | speed-up | same places as umap-learn |", "|---|---|---|---|"]
    lines += [f"| {r['variant']} | {r['median_seconds']:.1f} | {r['speedup']:.2f}x | "
              f"{'yes, bit for bit' if r['same_places'] else 'no'} |" for r in rows]
    write_results(args.results, "umap_placement", result, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
