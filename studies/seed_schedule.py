"""How the `seed` preset's training schedule was chosen: train the original network
(784-64-32-3-32-64-784, sigmoid everywhere) on all 70,000 MNIST digits with several
schedules and compare the final reconstruction loss — the only thing a user without
labels can see. Purity is printed beside it for information; it is not used to choose.

    python studies/seed_schedule.py            # all schedules below, seed 0
    python studies/seed_schedule.py --only 7   # one of them

Writes studies/results/seed_schedule.json and .md.
"""

import argparse
import json
import time
from pathlib import Path

from encluster import EncodingClusterer, load_dataset, score

RESULTS = Path(__file__).parent / "results"
# (init, learning rate, batch size, epochs, schedule)
SCHEDULES = [
    ("torch", 1e-3, 256, 30, "constant"),  # "the obvious way" the issue describes
    ("xavier", 1e-2, 256, 30, "constant"),
    ("xavier-sigmoid", 1e-3, 256, 30, "constant"),
    ("xavier-sigmoid", 3e-3, 256, 30, "constant"),
    ("xavier-sigmoid", 1e-3, 64, 30, "constant"),
    ("xavier", 3e-3, 64, 30, "constant"),
    ("xavier-sigmoid", 1e-3, 32, 30, "constant"),
    ("xavier-sigmoid", 1e-2, 256, 30, "cosine"),
    ("xavier-sigmoid", 5e-3, 64, 30, "cosine"),
    ("xavier-sigmoid", 2e-3, 64, 60, "cosine"),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", type=int, nargs="*", help="indices into the schedule list")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data = load_dataset("mnist", scale=False)
    rows = []
    for i in args.only if args.only is not None else range(len(SCHEDULES)):
        init, lr, batch, epochs, schedule = SCHEDULES[i]
        started = time.perf_counter()
        model = EncodingClusterer(10, preset="seed", init=init, learning_rate=lr, batch_size=batch, epochs=epochs,
                                  schedule=schedule, corruption=0.0, random_state=args.seed).fit(data.X)
        scores = score(data.y, model.labels_)
        rows.append({"init": init, "learning_rate": lr, "batch_size": batch, "epochs": epochs, "schedule": schedule,
                     "seed": args.seed, "final_loss": model.history_[-1], "seconds": time.perf_counter() - started,
                     **scores})
        print(json.dumps(rows[-1]), flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "seed_schedule.json").write_text(json.dumps(rows, indent=2) + "\n")
    lines = ["| init | lr | batch | epochs | schedule | final BCE | mean cluster purity | ACC |", "|---" * 8 + "|"]
    lines += [f"| {r['init']} | {r['learning_rate']:g} | {r['batch_size']} | {r['epochs']} | {r['schedule']} | "
              f"{r['final_loss']:.4f} | {r['mean_cluster_purity']:.3f} | {r['acc']:.3f} |" for r in rows]
    (RESULTS / "seed_schedule.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
