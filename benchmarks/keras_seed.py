"""The original experiment's framework beside ours: the `seed` network (784-64-32-3-32-64-784,
sigmoid, binary cross-entropy, Adam) trained on all 70,000 MNIST digits for a few epochs
in TensorFlow/Keras and in encluster (as the preset trains, with its denoising masks), in
the same run, same batch size; the median seconds per epoch of each (the first epoch,
which builds graphs and warms caches, left out) and their ratio.

    python benchmarks/keras_seed.py --keras-python TF_ENV/bin/python [--epochs 4] [--batch-size 64]

TensorFlow is not a dependency of encluster: install it in its own environment
(``python -m venv TF_ENV && TF_ENV/bin/pip install tensorflow-cpu``). Writes
benchmarks/results/keras_seed.json and .md.
"""

import argparse
import json
import statistics
import subprocess
import time
from pathlib import Path

from machine import describe

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
    from encluster.presets import get_preset
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
                                loss="bce", corruption=settings["corruption"])
        start = time.perf_counter()
        train_autoencoder(model, rows, config, generator=torch.Generator().manual_seed(0))
        times.append(time.perf_counter() - start)
    return {"epoch_seconds": times, "torch": torch.__version__}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keras-python", required=True, help="interpreter that has TensorFlow")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64, help="default 64, the seed preset's")
    args = parser.parse_args()
    from encluster.data import BUNDLED_DIR

    files = [str(BUNDLED_DIR / "mnist" / f"{part}-images-idx3-ubyte.gz") for part in ("train", "t10k")]
    mine = ours(args.epochs, args.batch_size)
    child = subprocess.run([args.keras_python, "-c", KERAS_CHILD, str(args.epochs), str(args.batch_size), *files],
                           capture_output=True, text=True, check=True)
    keras = json.loads(child.stdout.strip().splitlines()[-1])
    ours_median = statistics.median(mine["epoch_seconds"][1:])
    keras_median = statistics.median(keras["epoch_seconds"][1:])
    result = {"machine": describe(), "batch_size": args.batch_size, "epochs": args.epochs, "encluster": mine,
              "keras": keras, "encluster_median_epoch_s": ours_median, "keras_median_epoch_s": keras_median,
              "speedup": keras_median / ours_median}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "keras_seed.json").write_text(json.dumps(result, indent=2) + "\n")
    md = (f"Machine: {result['machine']}. `seed` network on MNIST-70k, batch {args.batch_size}, median of epochs "
          f"2..{args.epochs}:\n\n| framework | s per epoch |\n|---|---|\n"
          f"| TensorFlow {keras['tensorflow']} / Keras | {keras_median:.2f} |\n"
          f"| encluster (PyTorch {mine['torch']}) | {ours_median:.2f} |\n\n"
          f"encluster is **{result['speedup']:.2f}x** as fast per epoch.\n")
    (RESULTS / "keras_seed.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
