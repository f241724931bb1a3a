"""csr: continuous (arbitrary-scale) image super-resolution.

    import csr
    csr.list_models()
    model = csr.create_model("liif-edsr-baseline")
    big = csr.upscale(pil_image, scale=3.7)          # or size=(1920, 1080)

Attributes are imported lazily, so ``import csr.io`` or ``csr.metrics`` does not load torch.
"""
__version__ = "0.1.0"

_LAZY = {"create_model": "zoo", "list_models": "zoo", "load_model": "zoo", "evaluate": "evaluation",
         "upscale": "api", "output_size": "api"}


def check_checkout(repo) -> None:
    """Raise unless this ``csr`` is the package inside the checkout ``repo``.

    Benchmarks, notebooks and tests write into their own checkout's ``results/`` and measure its
    shipped weights; a ``pip install -e`` made in another clone (a clean-clone CI check, say) points
    ``import csr`` there, and they would silently measure and write the other clone's files.
    """
    from pathlib import Path
    here, repo = Path(__file__).resolve().parent, Path(repo).resolve()
    if here != repo / "csr":
        raise RuntimeError(f"csr is imported from {here}, not from this checkout ({repo}): results would "
                           f"come from another clone's code and weights. Point it back with "
                           f"`python -m pip install --no-deps -e {repo}`.")


def __getattr__(name):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'csr' has no attribute {name!r}")
