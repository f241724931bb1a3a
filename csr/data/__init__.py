"""Datasets: benchmark pairs under named protocols, and LIIF's random-scale training sampler."""
from .benchmark import (BENCHMARKS, PROTOCOLS, BenchmarkSet, Pair, centre_crops, crop_border_for,  # noqa: F401
                        data_root, list_images, resolve_dataset)
