"""What a run's labels depend on besides its settings and seed: the libraries, the thread
count, the precision training computed in, and the CPU. Two runs with the same settings and
seed give identical labels when all of these agree too (docs/reproducibility.md)."""

import logging
import platform
from importlib import metadata
from pathlib import Path

import torch

log = logging.getLogger(__name__)
LIBRARIES = ("torch", "numpy", "scikit-learn", "umap-learn", "numba", "scipy")


def cpu_name():
    """The processor's model name (Linux's /proc/cpuinfo), else what the platform reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(precision):
    """The versions, threads, precision and CPU a fit ran with, for metrics.json and model.json."""
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    versions["torch"] = torch.__version__  # with its build: +cpu, +cu121 ...
    return {"libraries": versions, "torch_threads": torch.get_num_threads(), "precision": precision,
            "cpu": cpu_name(), "python": platform.python_version()}


def differences(recorded, current):
    """What differs between two `environment` records, as short phrases (empty when nothing does)."""
    found = []
    for name in LIBRARIES:
        old, new = (recorded.get("libraries") or {}).get(name), current["libraries"].get(name)
        if old != new:
            found.append(f"{name} {old} here {new}")
    for key in ("torch_threads", "precision", "cpu"):
        if recorded.get(key) != current[key]:
            found.append(f"{key} {recorded.get(key)} here {current[key]}")
    return found
