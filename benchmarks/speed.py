"""Speed benchmark: how close training comes to this machine's matrix-multiply peak, and
where the time of a whole `encluster run` goes.

    python benchmarks/speed.py                      # peak + training throughput (a few minutes)
    python benchmarks/speed.py --stages 3           # + `encluster run` stage times, median of 3 per preset
    python benchmarks/speed.py --stages 3 --stage-presets default   # stage times of the default only
    python benchmarks/speed.py --quick --results /tmp/x   # a small matmul, a few steps of the default

1. Peak: the best `torch.mm` rate on 4096x4096 matrices (GFLOP/s), in float32 and in
   bfloat16 (fast only where the CPU has bfloat16 instructions: AVX512-BF16, AMX).
2. Training throughput of each preset's autoencoder on MNIST batches (Adam, the
   preset's loss), at the preset's batch size and at larger ones, in float32 and in
   bfloat16 (`TrainingConfig.precision`): samples/s, GFLOP/s (6 multiply-adds' worth of
   FLOPs per weight per sample: forward, and backward for inputs and weights) and the
   fraction of that precision's peak.
3. With --stages N: `encluster run --preset P` on MNIST-70k, N times per preset, the
   median seconds of every stage (load, train, encode, embed, cluster, score, save,
   plot, report) and the peak memory.

Writes benchmarks/results/speed.json and .md.
"""

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from encluster import load_dataset
from encluster.models import Autoencoder
from encluster.params import take
from encluster.stages import get_preset
from encluster.stages import encode
from encluster.training import PRECISIONS, adam, batch_loss, reconstruction_loss

from common import benchmark_parser, describe, write_results


def matmul_peak(dtype, size=4096, repeats=10):
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    torch.mm(a, b)
    best = min(_timed(lambda: torch.mm(a, b)) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def training_throughput(preset, batch_size, precision, X, steps=60):
    settings = get_preset(preset)
    encoding = take(encode.EncodeSettings, settings)
    spec = encode.network_spec(encoding, X.shape[1], encode.code_width(encoding, 10))
    torch.manual_seed(0)
    model = Autoencoder(spec).train()
    optimizer = adam(model.parameters(), settings["learning_rate"])
    loss_fn = reconstruction_loss(settings["loss"], model.output_activation)
    data = torch.as_tensor(X)
    weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))

    def step(i):
        batch = data[(i * batch_size) % (len(data) - batch_size):][:batch_size]
        loss = batch_loss(model, batch, batch, loss_fn, precision)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for i in range(5):
        step(i)
    start = time.perf_counter()
    for i in range(steps):
        step(i)
    seconds = time.perf_counter() - start
    samples_per_s = steps * batch_size / seconds
    return {"preset": preset, "batch_size": batch_size, "precision": precision, "samples_per_s": round(samples_per_s),
            "gflops": round(6 * weights * samples_per_s / 1e9, 1),
            "epoch_seconds_mnist70k": round(70_000 / samples_per_s, 1)}


def stage_times(preset, repeats, seed=0):
    runs = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([sys.executable, "-m", "encluster", "run", "--preset", preset, "--seed", str(seed),
                            "--out", f"{tmp}/run", "-q"], check=True)
            runs.append(json.loads(Path(f"{tmp}/run/metrics.json").read_text()))
    stages = sorted({k for r in runs for k in r["timings"]})
    return {"preset": preset, "repeats": repeats, "seed": seed, "acc": [r["acc"] for r in runs],
            "precision": runs[0]["precision"],
            "stages": {k: statistics.median(r["timings"].get(k, 0.0) for r in runs) for k in stages},
            "total_seconds": statistics.median(r["total_seconds"] for r in runs),
            "peak_memory_mb": max(r["peak_memory_mb"] for r in runs)}


def main():
    parser = benchmark_parser(__doc__)
    parser.add_argument("--stages", type=int, default=0, metavar="N", help="also time `encluster run` N times")
    parser.add_argument("--presets", nargs="+", default=["seed", "default"])
    parser.add_argument("--stage-presets", nargs="+", metavar="PRESET",
                        help="presets whose `encluster run` --stages times (default: all of --presets)")
    args = parser.parse_args()
    if args.quick:
        args.presets, args.stages = ["default"], 0
    X = load_dataset("mnist", split="test", max_samples=2_000 if args.quick else None).X
    size, repeats, steps = (512, 2, 3) if args.quick else (4096, 10, 60)
    peaks = {precision: matmul_peak(getattr(torch, precision), size, repeats) for precision in PRECISIONS}
    print("matmul peak GFLOP/s", {k: round(v, 1) for k, v in peaks.items()}, flush=True)
    throughput = []
    for preset in args.presets:
        base = get_preset(preset)["batch_size"]
        batch_sizes = {base} if args.quick else {base, 1024, 4096} if preset != "seed" else {base, 256}
        for batch_size in sorted(batch_sizes):
            for precision in PRECISIONS:
                row = training_throughput(preset, batch_size, precision, X, steps)
                row["fraction_of_peak"] = round(row["gflops"] / peaks[precision], 3)
                print(json.dumps(row), flush=True)
                throughput.append(row)
    stages = [stage_times(p, args.stages) for p in args.stage_presets or args.presets] if args.stages else []
    result = {"machine": describe(), "threads": torch.get_num_threads(),
              "matmul_peak_gflops": {k: round(v, 1) for k, v in peaks.items()},
              "throughput": throughput, "stages": stages}
    lines = [f"Machine: {result['machine']}, {result['threads']} torch threads. Matmul peak ({size}x{size} torch.mm, "
             f"best of {repeats}): **{peaks['float32']:.1f} GFLOP/s** in float32, **{peaks['bfloat16']:.1f}** in bfloat16.",
             "", "| preset | batch | precision | samples/s | GFLOP/s | of that peak | s per MNIST-70k epoch |",
             "|---" * 7 + "|"]
    lines += [f"| {r['preset']} | {r['batch_size']} | {r['precision']} | {r['samples_per_s']:,} | {r['gflops']} | "
              f"{100 * r['fraction_of_peak']:.0f}% | {r['epoch_seconds_mnist70k']} |" for r in throughput]
    for s in stages:
        lines += ["", f"`encluster run --preset {s['preset']}` on MNIST-70k, median of {s['repeats']} "
                  f"(seed {s['seed']}, training in {s['precision']}): total {s['total_seconds']:.0f} s, "
                  f"peak {s['peak_memory_mb']:.0f} MB, "
                  f"ACC {', '.join(f'{a:.3f}' for a in s['acc'])}", "",
                  "| stage | seconds |", "|---|---|"] + [f"| {k} | {v:.1f} |" for k, v in s["stages"].items()]
    write_results(args.results, "speed", result, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
