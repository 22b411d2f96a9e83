"""The default preset as the data grows: time, peak memory and ACC of each stage of `encluster run`
on N = 100k, 300k and 1M MNIST-like samples (MNIST's digits cycled, each shifted by up to 2 pixels
and given noise: benchmarks/make_shifted_mnist.py), memory-mapped from a uint8 .npy file.

    python benchmarks/scaling.py                         # the default preset, one process
    python benchmarks/scaling.py --procs 2 --sizes 1000000 --epochs 2 --name scaling_torchrun
    python benchmarks/scaling.py --device cuda --dataset mnist --name scaling_gpu_mnist   # where a GPU is lent
    python benchmarks/scaling.py --quick --results /tmp/x   # 500 and 1,000 shifted digits, one epoch

Each N runs as a whole `encluster run` (k-means baseline, plots and report included, as a user runs
it) in its own process, one after the other; `--procs 2` runs it under torchrun. Peak memory is the
largest resident set of any one process (wait4), and each stage's entry is that process's peak by
the stage's end. Writes benchmarks/results/NAME.json and .md (NAME: scaling by default), with how
each stage's time grows with N: the exponent p of time ~ N^p between the smallest and largest N.
"""

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import benchmark_parser, describe, write_results  # noqa: E402

from encluster import score  # noqa: E402

SIZES = (100_000, 300_000, 1_000_000)
STAGES = ("load", "train", "encode", "embed", "cluster", "selflabel", "score", "save", "plot")


def run_once(data, out, args):
    """One `encluster run` on `data`; its metrics, wall seconds and largest resident set (MB)."""
    command = [sys.executable, "-m", "encluster", "run", "--dataset", str(data), "--preset", args.preset,
               "--seed", str(args.seed), "--device", args.device, "--out", str(out), "--force", "-q"]
    if args.epochs is not None:
        command += ["--epochs", str(args.epochs)]
    if args.steps is not None:
        command += ["--steps", str(args.steps)]
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
    parser = benchmark_parser(__doc__)
    parser.add_argument("--preset", default="default")
    parser.add_argument("--epochs", type=int, default=None, help="pretraining epochs (default: the preset's)")
    parser.add_argument("--steps", type=int, default=None,
                        help="pretraining's least optimizer steps, 0 for none (default: the preset's)")
    parser.add_argument("--procs", type=int, default=1, help="processes under torchrun (1: plain encluster run)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="encluster's --device (cuda where a GPU is lent)")
    parser.add_argument("--dataset", help="a built-in data set (e.g. mnist) run once instead of the shifted sets")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--workdir", default="/tmp/encluster-scaling")
    parser.add_argument("--name", default="scaling", help="results file name (benchmarks/results/NAME.json/.md)")
    parser.add_argument("--rewrite", action="store_true", help="only rewrite NAME.md from NAME.json, running nothing")
    args = parser.parse_args()
    if args.quick:  # two small shifted sets, one pass of pretraining (the default's step floor would make it 100)
        args.sizes, args.epochs, args.steps = [500, 1_000], 1, 0
    if args.rewrite:
        saved = json.loads((args.results / f"{args.name}.json").read_text())
        return write_scaling(saved["rows"], args, saved["machine"], saved["command"])
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in [None] if args.dataset else sorted(args.sizes):
        data = args.dataset or work / f"shifted-{n}.npy"
        if not args.dataset and not data.exists():
            subprocess.run([sys.executable, str(Path(__file__).parent / "make_shifted_mnist.py"), str(n), str(data)],
                           check=True)
        out = work / f"run-{args.dataset or n}-{args.preset}-p{args.procs}-{args.device}"
        metrics, wall, peak = run_once(data, out, args)
        labels = np.load(work / f"shifted-{n}.labels.npy") if n else None
        scores = score(labels, np.load(out / "assignments.npy")) if n else metrics
        rows.append({"n_samples": metrics["n_samples"], "dataset": metrics["dataset"], "preset": args.preset,
                     "procs": args.procs, "device": args.device, "seed": args.seed, "epochs": len(metrics["history"]),
                     "wall_seconds": round(wall, 1), "peak_memory_mb": round(peak), "acc": round(scores["acc"], 4),
                     "nmi": round(scores["nmi"], 4), "selflabel_moved": (metrics.get("selflabel") or {}).get("moved"),
                     "timings": metrics["timings"], "peak_memory_by_stage_mb": metrics["peak_memory_by_stage_mb"],
                     "data_file_mb": round(data.stat().st_size / 1e6) if n else None})
        print(json.dumps(rows[-1]), flush=True)
    machine = describe()
    if args.device.startswith("cuda"):
        import torch

        machine += f", GPU {torch.cuda.get_device_name(torch.device(args.device))}"
    write_scaling(rows, args, machine, " ".join(["python", "benchmarks/scaling.py", *sys.argv[1:]]))


def write_scaling(rows, args, machine, command):
    """NAME.json and NAME.md from the rows of the runs (also from an earlier NAME.json: --rewrite)."""
    for row in rows:
        row.update({f"seconds_{stage}": row["timings"].get(stage, 0.0) for stage in STAGES})
    stages = [s for s in STAGES if any(r[f"seconds_{s}"] for r in rows)]
    # Growth only where every size spends a second or more: a stage of milliseconds has no rate worth a number.
    exponents = {s: growth(rows, f"seconds_{s}") for s in stages if all(r[f"seconds_{s}"] >= 1 for r in rows)}
    exponents["total"] = growth(rows, "wall_seconds")
    exponents["peak memory"] = growth(rows, "peak_memory_mb")
    result = {"machine": machine, "command": command, "rows": rows, "growth_exponents": exponents}
    fmt = lambda p: "-" if p is None else f"{p:.2f}"  # noqa: E731
    procs = f" under torchrun with {args.procs} processes" if args.procs > 1 else ""
    data = args.dataset or "shifted MNIST (memory-mapped uint8 .npy)"
    lines = [f"`{command}`: `encluster run --preset {args.preset} --device {args.device}`{procs} on "
             f"{data}, seed {args.seed}; {machine}.", "",
             "| N | epochs | " + " | ".join(f"{s} s" for s in stages) + " | total s | peak memory MB | ACC |",
             "|---|---|" + "---|" * len(stages) + "---|---|---|"]
    lines += [f"| {r['n_samples']:,} | {r['epochs']} | " + " | ".join(f"{r[f'seconds_{s}']:.0f}" for s in stages)
              + f" | {r['wall_seconds']:.0f} | {r['peak_memory_mb']:,} | {r['acc']:.4f} |" for r in rows]
    if len(rows) > 1:
        lines += ["", f"Growth from N = {rows[0]['n_samples']:,} to {rows[-1]['n_samples']:,} (time ~ N^p; 1 is "
                  "linear): " + ", ".join(f"{s} {fmt(p)}" for s, p in exponents.items()) + "."]
    lines += ["", "Peak memory by the end of each stage, MB (the largest process):", ""]
    lines += [f"- N = {r['n_samples']:,}: " + ", ".join(f"{s} {r['peak_memory_by_stage_mb'][s]:,.0f}" for s in STAGES
                                                      if s in r["peak_memory_by_stage_mb"]) for r in rows]
    write_results(args.results, args.name, result, "\n".join(lines))
    print("\n".join(lines))

if __name__ == "__main__":
    main()
