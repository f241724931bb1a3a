"""Datasets: benchmark pairs under named protocols, and LIIF's random-scale training sampler."""
from .benchmark import BENCHMARKS, PROTOCOLS, BenchmarkSet, Pair, crop_border_for, data_root, resolve_dataset  # noqa: F401
