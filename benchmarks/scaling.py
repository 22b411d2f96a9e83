"""The default preset as the data grows: time, peak memory and ACC of each stage of `encluster run`
on N = 100k, 300k and 1M MNIST-like samples (MNIST's digits cycled, each shifted by up to 2 pixels
and given noise: benchmarks/make_shifted_mnist.py), memory-mapped from a uint8 .npy file.

    python benchmarks/scaling.py                         # the default preset, one process
    python benchmarks/scaling.py --procs 2 --sizes 1000000 --epochs 2 --name scaling_torchrun

Each N runs as a whole `encluster run` (k-means baseline, plots and report included, as a user runs
it) in its own process, one after the other; `--procs 2` runs it under torchrun. Peak memory is the
largest resident set of any one process (wait4), and each stage's entry is that process's peak by
the stage's end. Writes benchmarks/results/NAME.json and .md (NAME: scaling by default), with how
each stage's time grows with N: the exponent p of time ~ N^p between the smallest and largest N.
"""

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe  # noqa: E402

from encluster import score  # noqa: E402

RESULTS = Path(__file__).parent / "results"
SIZES = (100_000, 300_000, 1_000_000)
STAGES = ("load", "train", "encode", "embed", "cluster", "selflabel", "score", "save", "plot")


def run_once(data, out, args):
    """One `encluster run` on `data`; its metrics, wall seconds and largest resident set (MB)."""
    command = [sys.executable, "-m", "encluster", "run", "--dataset", str(data), "--preset", args.preset,
               "--seed", str(args.seed), "--out", str(out), "--force", "-q"]
    if args.epochs is not None:
        command += ["--epochs", str(args.epochs)]
    if args.procs > 1:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={args.procs}",
                   "-m", "encluster", *command[3:]]
    started = time.perf_counter()
    process = subprocess.Popen(command)
    _, status, usage = os.wait4(process.pid, 0)  # ru_maxrss: the largest of the process and its children
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"encluster run failed on {data} (exit {os.waitstatus_to_exitcode(status)})")
    return json.loads((out / "metrics.json").read_text()), wall, usage.ru_maxrss / 1024


def growth(rows, key):
    """The exponent p of cost ~ N^p between the smallest and the largest N (None if either is 0)."""
    first, last = rows[0], rows[-1]
    a, b = first[key], last[key]
    if not a or not b or first["n_samples"] == last["n_samples"]:
        return None
    return math.log(b / a) / math.log(last["n_samples"] / first["n_samples"])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="default")
    parser.add_argument("--epochs", type=int, default=None, help="pretraining epochs (default: the preset's)")
    parser.add_argument("--procs", type=int, default=1, help="processes under torchrun (1: plain encluster run)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--workdir", default="/tmp/encluster-scaling")
    parser.add_argument("--name", default="scaling", help="results file name (benchmarks/results/NAME.json/.md)")
    args = parser.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in sorted(args.sizes):
        data = work / f"shifted-{n}.npy"
        if not data.exists():
            subprocess.run([sys.executable, str(Path(__file__).parent / "make_shifted_mnist.py"), str(n), str(data)],
                           check=True)
        metrics, wall, peak = run_once(data, work / f"run-{n}-{args.preset}-p{args.procs}", args)
        labels = np.load(work / f"run-{n}-{args.preset}-p{args.procs}" / "assignments.npy")
        scores = score(np.load(work / f"shifted-{n}.labels.npy"), labels)
        moved = (metrics.get("selflabel") or {}).get("moved")
        rows.append({"n_samples": n, "preset": args.preset, "procs": args.procs, "seed": args.seed,
                     "epochs": len(metrics["history"]), "wall_seconds": round(wall, 1),
                     "peak_memory_mb": round(peak), "acc": round(scores["acc"], 4), "nmi": round(scores["nmi"], 4),
                     "selflabel_moved": moved, "timings": metrics["timings"],
                     "peak_memory_by_stage_mb": metrics["peak_memory_by_stage_mb"],
                     "data_file_mb": round(data.stat().st_size / 1e6)})
        print(json.dumps(rows[-1]), flush=True)
    for row in rows:
        row.update({f"seconds_{stage}": row["timings"].get(stage, 0.0) for stage in STAGES})
    stages = [s for s in STAGES if any(r[f"seconds_{s}"] for r in rows)]
    exponents = {s: growth(rows, f"seconds_{s}") for s in stages}
    exponents["total"] = growth(rows, "wall_seconds")
    exponents["peak memory"] = growth(rows, "peak_memory_mb")
    RESULTS.mkdir(exist_ok=True)
    result = {"machine": describe(), "command": " ".join(["python", "benchmarks/scaling.py", *sys.argv[1:]]),
              "rows": rows, "growth_exponents": exponents}
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    fmt = lambda p: "-" if p is None else f"{p:.2f}"  # noqa: E731
    procs = f" under torchrun with {args.procs} processes" if args.procs > 1 else ""
    lines = [f"`{result['command']}`: `encluster run --preset {args.preset}`{procs} on shifted MNIST "
             f"(memory-mapped uint8 .npy), seed {args.seed}; {result['machine']}.", "",
             "| N | epochs | " + " | ".join(f"{s} s" for s in stages) + " | total s | peak memory MB | ACC |",
             "|---|---|" + "---|" * len(stages) + "---|---|---|"]
    lines += [f"| {r['n_samples']:,} | {r['epochs']} | " + " | ".join(f"{r[f'seconds_{s}']:.0f}" for s in stages)
              + f" | {r['wall_seconds']:.0f} | {r['peak_memory_mb']:,} | {r['acc']:.4f} |" for r in rows]
    if len(rows) > 1:
        lines += ["", f"Growth from N = {rows[0]['n_samples']:,} to {rows[-1]['n_samples']:,} (time ~ N^p; 1 is "
                  "linear): " + ", ".join(f"{s} {fmt(p)}" for s, p in exponents.items()) + "."]
    lines += ["", "Peak memory by the end of each stage, MB (the largest process): "]
    lines += [f"- N = {r['n_samples']:,}: " + ", ".join(f"{k} {v:,.0f}" for k, v in r["peak_memory_by_stage_mb"].items())
              for r in rows]
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
