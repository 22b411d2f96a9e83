"""Time and peak memory of `encluster run` as the data grows: N = 10k, 70k, 280k, 1M
samples of 784 features, memory-mapped from a .npy file (benchmarks/make_shifted_mnist.py).

    python benchmarks/scaling.py --epochs 2 --preset seed --workdir /tmp/scaling

Each N runs in its own process, one after the other. Writes
benchmarks/results/scaling.json and .md.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
SIZES = (10_000, 70_000, 280_000, 1_000_000)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--preset", default="seed", help="encluster's --preset (default seed, the README's table)")
    parser.add_argument("--workdir", default="/tmp/encluster-scaling")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    args = parser.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in args.sizes:
        data = work / f"shifted-{n}.npy"
        if not data.exists():
            subprocess.run([sys.executable, str(Path(__file__).parent / "make_shifted_mnist.py"), str(n), str(data)],
                           check=True)
        out = work / f"run-{n}"
        subprocess.run([sys.executable, "-m", "encluster", "run", "--dataset", str(data), "--preset", args.preset,
                        "--epochs", str(args.epochs), "--out", str(out), "--force", "-q"], check=True)
        m = json.loads((out / "metrics.json").read_text())
        rows.append({"n_samples": n, "preset": args.preset, "epochs": args.epochs, "total_seconds": m["total_seconds"],
                     "train_seconds": m["train_seconds"], "seconds_per_epoch": m["train_seconds"] / args.epochs,
                     "peak_memory_mb": m["peak_memory_mb"], "timings": m["timings"],
                     "data_file_mb": data.stat().st_size / 1e6})
        print(json.dumps(rows[-1]), flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "scaling.json").write_text(json.dumps(rows, indent=2) + "\n")
    lines = [f"`encluster run --dataset shifted-N.npy --preset {args.preset} --epochs {args.epochs}` (memory-mapped "
             "uint8 input)",
             "", "| N | data file MB | train s | s per epoch | total s | peak memory MB |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['n_samples']:,} | {r['data_file_mb']:.0f} | {r['train_seconds']:.0f} | {r['seconds_per_epoch']:.1f} "
              f"| {r['total_seconds']:.0f} | {r['peak_memory_mb']:.0f} |" for r in rows]
    (RESULTS / "scaling.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
