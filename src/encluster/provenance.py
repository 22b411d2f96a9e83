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
    """The processor's model name with its family, model and stepping (Linux's /proc/cpuinfo), else
    what the platform reports."""
    try:
        described = describe_cpu(Path("/proc/cpuinfo").read_text())
    except OSError:
        described = None
    return described or platform.processor() or platform.machine()


def describe_cpu(cpuinfo):
    """The first processor's name in /proc/cpuinfo's text, with its family, model and stepping: a
    virtual machine may report only "AMD EPYC" for processors of different generations, whose
    matrix-product kernels round differently. None where the text names no model."""
    fields = {}
    for line in cpuinfo.splitlines():
        if not line.strip():
            break  # the first processor's block
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    if "model name" not in fields:
        return None
    generation = [f"{label} {fields[key]}" for key, label in (("cpu family", "family"), ("model", "model"),
                                                              ("stepping", "stepping")) if key in fields]
    return fields["model name"] + (f" ({', '.join(generation)})" if generation else "")


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
