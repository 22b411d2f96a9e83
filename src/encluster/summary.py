"""What the terminal shows: a finished run's scores, and several runs side by side."""

import json
import shutil
import textwrap
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .errors import RunDirError
from .metrics import SCORE_NAMES
from .profiles import describe_top
from .report import baseline_name, confidence_sentence, layouts_sentence, separation_sentence, space_sentence

MAX_PROFILE_LINES = 20


def print_run_summary(metrics, run_dir):
    """The scores beside the baseline's (or the cluster sizes), the times and where the results are."""
    console = Console()
    title = (f"{metrics['dataset']}: {metrics['n_samples']:,} samples, {metrics['n_clusters']} clusters, "
             f"preset {metrics['preset']}, seed {metrics['seed']}")
    if metrics["acc"] is None:
        console.print(f"{title}\nno labels, so no scores; cluster sizes: {metrics['cluster_sizes']}")
    else:
        table = Table(title=title)
        table.add_column("score")
        table.add_column("encoding", justify="right")
        pixels = metrics.get("pixels")
        if pixels:
            table.add_column(baseline_name(metrics), justify="right")
        for name in SCORE_NAMES:
            row = [name, f"{metrics[name]:.4f}"] + ([f"{pixels[name]:.4f}"] if pixels else [])
            table.add_row(*row)
        console.print(table)
    if (metrics.get("separation") or {}).get("raw_at_least_as_good"):
        console.print(separation_note(metrics), highlight=False, markup=False)
    if metrics.get("profiles"):
        console.print("what sets each cluster apart (standard deviations from the other rows):")
        for cluster in metrics["profiles"][:MAX_PROFILE_LINES]:
            console.print("  " + describe_top(cluster), highlight=False, markup=False)
        if len(metrics["profiles"]) > MAX_PROFILE_LINES:
            console.print(f"  ... and {len(metrics['profiles']) - MAX_PROFILE_LINES} more in profiles.csv")
    relabelled = metrics.get("selflabel")
    if relabelled:
        before = relabelled.get("before")
        console.print(f"self-labelling: {relabelled['sure_members']:,} sure members taught a "
                      f"{relabelled['classifier'].upper()}; it moved {relabelled['moved']:,} samples"
                      + (f" (ACC {before['acc']:.4f} before)" if before else ""), highlight=False)
    if metrics.get("layout_agreement"):
        console.print(f"UMAP {layouts_sentence(metrics['layout_agreement'])}", highlight=False)
    if metrics.get("confidence"):
        console.print(confidence_sentence(metrics["confidence"]), highlight=False, markup=False)
    if metrics.get("space_choice"):
        console.print(f"space: {space_sentence(metrics['space_choice'])}", highlight=False, markup=False)
    selection = metrics.get("cluster_selection")
    if selection:
        console.print(f"--clusters auto chose {selection['chosen']}: the {selection['criterion']}")
    # Method umap (what the default runs for a narrow table) trains no network: say so instead of "0.0 s".
    trained = ("no network (method umap)" if metrics.get("method") == "umap"
               else f"trained in {metrics['train_seconds']:.1f} s")
    console.print(f"{trained}, total {metrics['total_seconds']:.1f} s, peak memory {metrics['peak_memory_mb']:.0f} MB")
    console.print(f"results in {run_dir}")


def read_runs(run_dirs):
    """``(name, metrics)`` of each finished run directory."""
    runs = []
    for run_dir in map(Path, run_dirs):
        try:
            metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise RunDirError(f"{run_dir}: no readable metrics.json; give finished run directories") from None
        runs.append((run_dir.name, metrics))
    return runs


def print_comparison(runs):
    """One row per run: data set, preset, seed, scores, the baseline's ACC and the training time."""
    table = Table(title=f"{len(runs)} runs")
    for col in ("run", "data set", "preset", "seed", *SCORE_NAMES, "pixels acc", "train s"):
        table.add_column(col, justify="left" if col in ("run", "data set", "preset") else "right")
    for name, m in runs:
        scores = [f"{m[s]:.4f}" if m.get(s) is not None else "-" for s in SCORE_NAMES]
        pixels = f"{m['pixels']['acc']:.4f}" if m.get("pixels") else "-"
        table.add_row(name, str(m["dataset"]), str(m["preset"]), str(m["seed"]), *scores, pixels,
                      f"{m.get('train_seconds', 0):.1f}")
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)  # piped output: do not squeeze the table into 80 columns
    console.print(table)


def print_datasets(rows):
    """The built-in data sets, one block each, wrapped to the terminal (80 columns when piped);
    a path stays on one line of its own, whole, so it can be copied."""
    width = min(shutil.get_terminal_size((80, 24)).columns, 100)
    print("built-in data sets")
    for name, what, where, credit in rows:
        print(f"\n{name}: {what}")
        print(textwrap.fill(where, width, initial_indent="  where: ", subsequent_indent="         ",
                            break_long_words=False, break_on_hyphens=False))
        print(textwrap.fill(credit, width, initial_indent="  credit: ", subsequent_indent="          "))
    print()
    print(textwrap.fill("Your own data: a .npy file (array X), .npz (arrays X and optional y), a .csv or .parquet "
                        "table (numeric; --label-column NAME) or a folder of images (one sub-folder per class, "
                        "optional).", width))


def separation_note(metrics):
    """One line, when k-means on the raw input separates the rows at least as well as the encoding."""
    return "note: " + separation_sentence(metrics)

