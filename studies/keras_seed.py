"""The original experiment's framework beside ours: the `seed` network (784-64-32-3-32-64-784,
sigmoid, binary cross-entropy, Adam) trained on all 70,000 MNIST digits for a few epochs
in TensorFlow/Keras and in encluster (as the preset trains, with its denoising masks), in
the same run, same batch size. The two take turns for several rounds (Keras first in odd
rounds, encluster first in even ones), so a noisy shared machine's slow spells fall on both;
each round drops its first epoch (graph building, warm caches). Reported: the median seconds
per epoch of each over all rounds, their ratio, and each round's ratio.

    python studies/keras_seed.py --keras-python TF_ENV/bin/python [--rounds 3] [--epochs 4] [--batch-size 64]

TensorFlow is not a dependency of encluster: install it in its own environment
(``python -m venv TF_ENV && TF_ENV/bin/pip install tensorflow-cpu``). Writes
studies/results/keras_seed.json and .md.
"""

import argparse
import json
import statistics
import subprocess
import time
from pathlib import Path

import sys
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))  # the shared helpers: common.py
from common import describe

RESULTS = Path(__file__).parent / "results"

KERAS_CHILD = r"""
import json, sys, time, gzip
import numpy as np
import tensorflow as tf
from tensorflow import keras
epochs, batch_size, files = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
X = np.concatenate([np.frombuffer(gzip.open(f).read(), np.uint8, offset=16).reshape(-1, 784) for f in files])
X = X.astype("float32") / 255
inputs = keras.Input((784,))
h = inputs
for width in (784, 64, 32, 3, 32, 64, 784):
    h = keras.layers.Dense(width, activation="sigmoid")(h)
model = keras.Model(inputs, h)
model.compile(optimizer=keras.optimizers.Adam(2e-3), loss="binary_crossentropy")
times = []
class Clock(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None): self.t = time.perf_counter()
    def on_epoch_end(self, epoch, logs=None): times.append(time.perf_counter() - self.t)
model.fit(X, X, epochs=epochs, batch_size=batch_size, shuffle=True, verbose=0, callbacks=[Clock()])
print(json.dumps({"epoch_seconds": times, "tensorflow": tf.__version__}))
"""


def ours(epochs, batch_size):
    import torch

    from encluster import load_dataset
    from encluster.models import Autoencoder, AutoencoderSpec
    from encluster.stages import get_preset
    from encluster.scaling import ScaledRows, Scaler
    from encluster.training import TrainingConfig, train_autoencoder

    settings = get_preset("seed")
    data = load_dataset("mnist", scale=False)
    rows = ScaledRows(data.X, Scaler.fit(data.X))
    spec = AutoencoderSpec(n_features=784, **{k: settings[k] for k in (
        "hidden", "decoder_hidden", "code_size", "activation", "code_activation", "output_activation", "init")})
    times = []
    for _ in range(epochs):  # one epoch per call, so each is timed on its own
        torch.manual_seed(0)
        model = Autoencoder(spec)
        # The preset as it trains, denoising included: ours draws masks Keras does not.
        config = TrainingConfig(epochs=1, batch_size=batch_size, learning_rate=settings["learning_rate"],
                                loss="bce", schedule=settings["schedule"], corruption=settings["corruption"],
                                precision="float32")
        start = time.perf_counter()
        train_autoencoder(model, rows, config, generator=torch.Generator().manual_seed(0))
        times.append(time.perf_counter() - start)
    return {"epoch_seconds": times, "torch": torch.__version__}


def keras(keras_python, epochs, batch_size, files):
    child = subprocess.run([keras_python, "-c", KERAS_CHILD, str(epochs), str(batch_size), *files],
                           capture_output=True, text=True, check=True)
    return json.loads(child.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keras-python", required=True, help="interpreter that has TensorFlow")
    parser.add_argument("--rounds", type=int, default=3, help="turns each framework takes (default 3)")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per turn; the first is not counted")
    parser.add_argument("--batch-size", type=int, default=64, help="default 64, the seed preset's")
    args = parser.parse_args()
    from encluster.data import BUNDLED_DIR

    files = [str(BUNDLED_DIR / "mnist" / f"{part}-images-idx3-ubyte.gz") for part in ("train", "t10k")]
    rounds = []
    for number in range(1, args.rounds + 1):
        turns = {"keras": lambda: keras(args.keras_python, args.epochs, args.batch_size, files),
                 "encluster": lambda: ours(args.epochs, args.batch_size)}
        order = ("keras", "encluster") if number % 2 else ("encluster", "keras")
        run = {name: turns[name]() for name in order}
        run["ratio"] = (statistics.median(run["keras"]["epoch_seconds"][1:])
                        / statistics.median(run["encluster"]["epoch_seconds"][1:]))
        rounds.append(run)
        print(f"round {number}: Keras / encluster per epoch = {run['ratio']:.2f}", flush=True)
    counted = {name: [t for run in rounds for t in run[name]["epoch_seconds"][1:]] for name in ("keras", "encluster")}
    ours_median, keras_median = statistics.median(counted["encluster"]), statistics.median(counted["keras"])
    result = {"machine": describe(), "batch_size": args.batch_size, "epochs": args.epochs, "rounds": rounds,
              "encluster_median_epoch_s": ours_median, "keras_median_epoch_s": keras_median,
              "speedup": keras_median / ours_median}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "keras_seed.json").write_text(json.dumps(result, indent=2) + "\n")
    per_round = ", ".join(f"{run['ratio']:.2f}x" for run in rounds)
    versions = f"TensorFlow {rounds[0]['keras']['tensorflow']} / Keras"
    md = (f"Machine: {result['machine']}. `seed` network on MNIST-70k, batch {args.batch_size}; {args.rounds} rounds "
          f"taking turns, {args.epochs} epochs per turn, the first of each not counted; median over the "
          f"{len(counted['keras'])} counted epochs of each:\n\n"
          f"| framework | s per epoch | range |\n|---|---|---|\n"
          f"| {versions} | {keras_median:.2f} | {min(counted['keras']):.2f}-{max(counted['keras']):.2f} |\n"
          f"| encluster (PyTorch {rounds[0]['encluster']['torch']}) | {ours_median:.2f} | "
          f"{min(counted['encluster']):.2f}-{max(counted['encluster']):.2f} |\n\n"
          f"encluster is **{result['speedup']:.2f}x** as fast per epoch (each round: {per_round}).\n")
    (RESULTS / "keras_seed.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
