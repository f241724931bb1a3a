"""Model zoo: importing this package registers every architecture with :mod:`csr.registry`."""
from . import mlp, edsr, rdn, swinir, liif, lte, metasr, lmf  # noqa: F401
