"""Reading a CSV table: encluster's reader (pyarrow's CSV parser, then one check per column) against
the Python loop over cells it replaced and pandas.read_csv, on the same file, medians of 3 rounds
taken in turn.

    python studies/csv_reader.py --rows 300000 --columns 20   # writes results/csv_reader.{json,md}
"""

import argparse
import csv
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

import sys
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))  # the shared helpers: common.py
from common import describe, machine

RESULTS = Path(__file__).parent / "results"


def python_loop(path):
    """The reader before: Python's csv module, then float() per cell."""
    with open(path, newline="", encoding="utf-8") as fh:
        rows = [row for row in csv.reader(fh) if row]
    header, rows = rows[0], rows[1:]
    label = header.index("label")
    X = np.empty((len(rows), len(header) - 1))
    for i, row in enumerate(rows):
        X[i] = [float(v) for j, v in enumerate(row) if j != label]
    return X


def ours(path):
    from encluster.formats import load_file

    return load_file(path, label_column="label").X


def pandas_read_csv(path):
    import pandas as pd

    return pd.read_csv(path).drop(columns="label").to_numpy(dtype=np.float64)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--columns", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    readers = {"encluster (pyarrow)": ours, "Python csv loop (before)": python_loop, "pandas.read_csv": pandas_read_csv}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "table.csv"
        rng = np.random.default_rng(0)
        X = rng.normal(size=(args.rows, args.columns))
        with open(path, "w") as fh:
            fh.write(",".join([f"c{i}" for i in range(args.columns)] + ["label"]) + "\n")
            for row, label in zip(X, rng.choice(["a", "b", "c"], args.rows)):
                fh.write(",".join(f"{v:.6g}" for v in row) + f",{label}\n")
        size_mb = path.stat().st_size / 1e6
        seconds = {name: [] for name in readers}
        for _ in range(args.rounds):
            for name, read in readers.items():
                clock = time.perf_counter()
                values = read(path)
                seconds[name].append(time.perf_counter() - clock)
                assert values.shape == (args.rows, args.columns)
    medians = {name: statistics.median(times) for name, times in seconds.items()}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "csv_reader.json").write_text(json.dumps({"machine": machine(), "args": vars(args),
                                                         "seconds": seconds}, indent=1))
    base = medians["encluster (pyarrow)"]
    lines = [f"# Reading a CSV ({describe()})", "",
             f"`python studies/csv_reader.py --rows {args.rows} --columns {args.columns}`: {args.rows:,} rows x "
             f"{args.columns} numeric columns and a text label, {size_mb:.0f} MB; median of {args.rounds} rounds.", "",
             "| reader | median s | x encluster's time |", "|---|---|---|"]
    lines += [f"| {name} | {m:.2f} | {m / base:.1f} |" for name, m in medians.items()]
    (RESULTS / "csv_reader.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
