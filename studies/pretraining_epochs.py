"""How clustering accuracy grows with pretraining epochs: N2D's published figures use 1,000.

One autoencoder per (data set, preset, seed) trains without stopping; at each checkpoint epoch
its codes are taken and clustered exactly as `EncodingClusterer` does (UMAP of the codes, then
Gaussian mixtures), in worker processes while training goes on. With the presets' constant
learning rate, the network after E epochs of a long run is the network a run of E epochs ends
with, so each checkpoint stands for `EncodingClusterer(preset=..., epochs=E)`.

    python studies/pretraining_epochs.py --datasets mnist --presets default --checkpoints 30 60
    python studies/pretraining_epochs.py --device cuda --budget 480 \\
        --jobs mnist/default/0 fashion-mnist/default/0 mnist/n2d/0 --checkpoints 30 40 60 100 200 400 700 1000

Every (data set, preset, seed) trains in its own process. Training stops before a checkpoint
that its measured epoch time says cannot be clustered within --budget seconds; what was reached
is written to <out>/pretraining_epochs.json and .md. Labels are used only for the scores.
"""

import argparse
import json
import multiprocessing
import os
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))  # the shared helpers: common.py
from common import describe

RESULTS = Path(__file__).parent / "results"
CLUSTER_MARGIN_S = 150  # time kept at the end for clustering the last checkpoint (UMAP of 70,000 codes)


class InMemoryCheckpoint:
    """Training state kept in memory between the segments of one uninterrupted run."""

    def __init__(self):
        self.stop, self.resume, self.active, self.state = threading.Event(), False, False, None

    def save(self, state):
        self.state = state

    def load(self):
        return self.state


def cluster(codes, y, settings, seed):
    """Cluster codes as `EncodingClusterer` does for n2d-style presets; return the scores."""
    from encluster import score
    from encluster.stages.cluster import gaussian_mixture
    from encluster.params import take
    from encluster.stages import embed

    started = time.perf_counter()
    k = int(y.max()) + 1
    passes = embed.epochs_for(len(codes), take(embed.EmbedSettings, settings))
    embedded = embed.UmapEmbedding(k, n_neighbors=settings["n_neighbors"], min_dist=embed.MIN_DIST, n_epochs=passes,
                                   random_state=seed).fit_transform(codes)
    labels, _ = gaussian_mixture(embedded, k, n_init=settings["n_init"], random_state=seed)
    return {**{m: round(float(v), 4) for m, v in score(y, labels).items()},
            "cluster_s": round(time.perf_counter() - started, 1)}


def train_and_score(dataset, preset, seed, checkpoints, device, deadline, workers, out):
    """Train one autoencoder through `checkpoints`, clustering the codes at each; rows go to `out`."""
    import numpy as np
    import torch

    from encluster import load_dataset
    from encluster.models import Autoencoder
    from encluster.params import take
    from encluster.stages import get_preset
    from encluster.stages import encode
    from encluster.scaling import ScaledRows, Scaler
    from encluster.training import TrainingConfig, apply_in_batches, resolve_precision, train_autoencoder

    data = load_dataset(dataset, scale=False)
    settings = get_preset(preset)
    k = int(data.y.max()) + 1
    device = torch.device(device)
    rows = ScaledRows(data.X, Scaler.fit(data.X))
    encoding = take(encode.EncodeSettings, settings)
    spec = encode.network_spec(encoding, data.X.shape[1], encode.code_width(encoding, k))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Autoencoder(spec)
    generator = torch.Generator().manual_seed(seed)
    state = InMemoryCheckpoint()
    trained, train_s, pending = 0, 0.0, []
    base = {"dataset": dataset, "preset": preset, "seed": seed, "device": str(device)}
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        for epochs in sorted(checkpoints):
            if trained and time.time() + (epochs - trained) * train_s / trained + CLUSTER_MARGIN_S > deadline:
                print(f"{dataset}/{preset}/{seed}: stop at {trained} epochs (next checkpoint would overrun)")
                break
            config = TrainingConfig(**{key: settings[key] for key in ("batch_size", "learning_rate", "loss",
                                                                      "schedule", "corruption")},
                                    epochs=epochs, precision=resolve_precision(settings["precision"], device))
            started = time.perf_counter()
            history = train_autoencoder(model, rows, config, generator=generator, device=device, checkpoint=state)
            train_s += time.perf_counter() - started
            state.resume, trained = True, epochs
            codes = apply_in_batches(model.to("cpu").encode, rows)
            row = {**base, "epochs": epochs, "loss": round(history[-1], 6), "train_s": round(train_s, 1),
                   "precision": config.precision}
            print(f"{dataset}/{preset}/{seed}: {epochs} epochs, loss {history[-1]:.5f}, {train_s:.0f} s", flush=True)
            pending.append((row, pool.submit(cluster, np.asarray(codes), data.y, settings, seed)))
        for row, future in pending:
            row.update(future.result())
            print(json.dumps(row), flush=True)
            with open(out, "a") as f:
                f.write(json.dumps(row) + "\n")


def markdown(rows, machine, command):
    lines = [f"Machine: {machine}", "", f"Command: `python {' '.join(command)}`", "",
             "| data set | preset | seed | device | epochs | final loss | train s | ACC | NMI | ARI |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: (r["dataset"], r["preset"], r["seed"], r["epochs"])):
        lines.append(f"| {r['dataset']} | {r['preset']} | {r['seed']} | {r['device']} | {r['epochs']} | "
                     f"{r['loss']:.5f} | {r['train_s']:.0f} | {r['acc']:.4f} | {r['nmi']:.4f} | {r['ari']:.4f} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["mnist"])
    parser.add_argument("--presets", nargs="+", default=["default"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--jobs", nargs="+", metavar="DATASET/PRESET/SEED",
                        help="these combinations instead of all of --datasets x --presets x --seeds")
    parser.add_argument("--checkpoints", nargs="+", type=int, default=[30, 100, 300, 1000])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--budget", type=float, default=float("inf"), help="seconds for the whole run")
    parser.add_argument("--workers", type=int, default=2, help="clustering processes per trained network")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    deadline = time.time() + args.budget
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "pretraining_epochs.jsonl"
    log.unlink(missing_ok=True)
    jobs = [(d, p, s) for d in args.datasets for p in args.presets for s in args.seeds]
    if args.jobs:
        jobs = [(d, p, int(s)) for d, p, s in (job.split("/") for job in args.jobs)]
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=train_and_score, args=(*job, args.checkpoints, args.device, deadline,
                                                               args.workers, log)) for job in jobs]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    rows = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    machine = describe()
    if args.device != "cpu":
        import torch

        machine += f", {torch.cuda.get_device_name(torch.device(args.device))}"
    (args.out / "pretraining_epochs.json").write_text(json.dumps({"machine": machine, "command": sys.argv, "runs": rows}, indent=1))
    (args.out / "pretraining_epochs.md").write_text(markdown(rows, machine, sys.argv))
    print(markdown(rows, machine, sys.argv))


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")  # each spawned trainer and clustering worker: 2 threads
    main()
