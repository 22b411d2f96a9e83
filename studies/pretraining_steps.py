"""How many optimizer steps the autoencoder needs, by data size: the label-free study behind
`steps="auto"` (at least a number of steps that grows with the square root of the number of samples).

Each data set is split 80/20 (seeded); the default preset's autoencoder, with widths from the number of
features (hidden "auto") and tables standardised (scaling "auto"), LeakyReLU, squared error, Adam 1e-3 at
batch 256, trains on the 80 %
part for --max-steps steps, and the held-out part's reconstruction loss is measured at log-spaced
steps. The steps a data set "needs" are the first at which the held-out loss comes within 2 % of
its best over the whole run: further steps buy little (or, for small sets, start to overfit). No
labels are read. The sets span sizes and kinds: MNIST subsets, MNIST at 16x16, scikit-learn's
`digits`, and tables.

    python studies/pretraining_steps.py             # writes results/pretraining_steps.{json,md}
"""

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

import sys
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))  # the shared helpers: common.py
from common import describe, machine

RESULTS = Path(__file__).parent / "results"
WITHIN = 0.02


def data_sets():
    """(name, rows) pairs; rows are raw, scaled later by the default preset's scaling."""
    import sklearn.datasets

    from encluster import load_dataset

    mnist = load_dataset("mnist", scale=False)
    rng = np.random.default_rng(0)
    yield "wine", sklearn.datasets.load_wine().data
    yield "breast_cancer", sklearn.datasets.load_breast_cancer().data
    yield "digits", sklearn.datasets.load_digits().data.astype(np.float32)
    for n in (1_000, 4_000, 16_000):
        yield f"mnist-{n // 1000}k", mnist.X[np.sort(rng.choice(len(mnist.X), n, replace=False))]
    small = torch.nn.functional.interpolate(torch.as_tensor(mnist.X[:16_000].reshape(-1, 1, 28, 28)).float(),
                                            size=(16, 16), mode="area")
    yield "mnist-16x16-16k", small.reshape(len(small), -1).numpy() / 255


def held_out_curve(name, X, max_steps, seed):
    from encluster import EncodingClusterer
    from encluster.models import Autoencoder
    from encluster.scaling import Scaler
    from encluster.stages import encode
    from encluster.training import adam, batch_loss, reconstruction_loss

    estimator = EncodingClusterer(preset="default", hidden="auto", scaling="auto")
    settings = encode.EncodeSettings(**{f: v for f, v in estimator.resolved_params().items()
                                        if f in encode.EncodeSettings.__dataclass_fields__})
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(X))
    cut = int(0.8 * len(X))
    scaler = Scaler.fit(X[order[:cut]], settings.scaling)
    train = torch.as_tensor(scaler.transform(X[order[:cut]]))
    test = torch.as_tensor(scaler.transform(X[order[cut:]]))
    torch.manual_seed(seed)
    model = Autoencoder(encode.network_spec(settings, X.shape[1], 10)).train()
    optimizer = adam(model.parameters(), settings.learning_rate)
    loss_fn = reconstruction_loss(settings.loss, model.output_activation)
    batch = settings.batch_size
    probes = sorted({int(round(x)) for x in np.geomspace(10, max_steps, 40)})
    generator = torch.Generator().manual_seed(seed)
    curve, step, perm, at = [], 0, torch.randperm(len(train), generator=generator), 0
    clock = time.perf_counter()
    while step < max_steps:
        if at >= len(train):
            perm, at = torch.randperm(len(train), generator=generator), 0
        rows = train[perm[at : at + batch]]
        at += batch
        loss = batch_loss(model, rows, rows, loss_fn, "float32")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        if step in probes:
            model.eval()
            with torch.inference_mode():
                held = float(batch_loss(model, test, test, loss_fn, "float32"))
            model.train()
            curve.append((step, held))
    seconds = time.perf_counter() - clock
    best = min(loss for _, loss in curve)
    needed = next(s for s, loss in curve if loss <= best * (1 + WITHIN))
    steps_per_epoch = math.ceil(cut / batch)
    return {"data": name, "n": len(X), "features": X.shape[1], "steps_needed": needed,
            "epochs_needed": round(needed / steps_per_epoch, 1), "best_held_out_loss": best,
            "best_at_step": min(curve, key=lambda c: c[1])[0], "seconds": round(seconds, 1), "curve": curve}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-steps", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = []
    for name, X in data_sets():
        rows.append(held_out_curve(name, np.asarray(X), args.max_steps, args.seed))
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "curve"}), flush=True)
    n, needed = np.array([r["n"] for r in rows]), np.array([r["steps_needed"] for r in rows])
    slope, intercept = np.polyfit(np.log(n), np.log(needed), 1)
    fit = {"exponent": round(float(slope), 3), "factor": round(float(np.exp(intercept)), 2)}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "pretraining_steps.json").write_text(json.dumps({"machine": machine(), "args": vars(args),
                                                                "fit": fit, "rows": rows}, indent=1))
    lines = [f"# Pretraining steps the autoencoder needs, by data size ({describe()})", "",
             f"`python studies/pretraining_steps.py --max-steps {args.max_steps} --seed {args.seed}`: the "
             f"default preset's network on 80 % of each set; the first step at which the held-out 20 %'s "
             f"reconstruction loss is within {WITHIN:.0%} of its best in {args.max_steps} steps. No labels.", "",
             "| data | samples | features | steps needed | epochs needed | best at step | seconds |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['data']} | {r['n']:,} | {r['features']} | {r['steps_needed']} | {r['epochs_needed']} | "
                     f"{r['best_at_step']} | {r['seconds']} |")
    lines += ["", f"Least-squares fit over the sets: steps needed ≈ {fit['factor']} × n^{fit['exponent']}."]
    (RESULTS / "pretraining_steps.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
