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


def __getattr__(name):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'csr' has no attribute {name!r}")
