"""Published numbers we compare against (Y-channel PSNR, shave = scale, benchmark protocol).

Sources: ``../shared/docs/anchors.md`` ([V] checked in the paper/official repo; [V2] via a later
paper's table) and the bicubic rows of ``../shared/datasets/README.md``. Keys:
``(method, dataset, scale) -> PSNR dB``.
"""

BICUBIC = {  # MATLAB bicubic, as published with the EDSR/RCAN benchmark files
    ("Set5", 2): 33.66, ("Set5", 3): 30.39, ("Set5", 4): 28.42,
    ("Set14", 2): 30.24, ("Set14", 3): 27.55, ("Set14", 4): 26.00,
    ("B100", 2): 29.56, ("B100", 3): 27.21, ("B100", 4): 25.96,
    ("Urban100", 2): 26.88, ("Urban100", 3): 24.46, ("Urban100", 4): 23.14,
}

RDN_LIIF = {  # LIIF paper Table 2 [V]
    ("Set5", 2): 38.17, ("Set5", 3): 34.68, ("Set5", 4): 32.50, ("Set5", 6): 29.15, ("Set5", 8): 27.14,
    ("Set14", 2): 33.97, ("Set14", 3): 30.53, ("Set14", 4): 28.80, ("Set14", 6): 26.64, ("Set14", 8): 25.15,
    ("B100", 2): 32.32, ("B100", 3): 29.26, ("B100", 4): 27.74, ("B100", 6): 25.98, ("B100", 8): 24.91,
    ("Urban100", 2): 32.87, ("Urban100", 3): 28.82, ("Urban100", 4): 26.68, ("Urban100", 6): 24.20,
    ("Urban100", 8): 22.79,
}

RDN_METASR = {  # LIIF paper Table 2 [V] (LIIF's re-implementation of MetaSR)
    ("Set5", 2): 38.22, ("Set5", 3): 34.63, ("Set5", 4): 32.38, ("Set5", 6): 29.04, ("Set5", 8): 26.96,
    ("Set14", 2): 33.98, ("Set14", 3): 30.54, ("Set14", 4): 28.78, ("Set14", 6): 26.51, ("Set14", 8): 24.97,
    ("B100", 2): 32.33, ("B100", 3): 29.26, ("B100", 4): 27.71, ("B100", 6): 25.90, ("B100", 8): 24.83,
    ("Urban100", 2): 32.92, ("Urban100", 3): 28.82, ("Urban100", 4): 26.55, ("Urban100", 6): 23.99,
    ("Urban100", 8): 22.59,
}

RDN_LTE = {  # Thera Tables 2 and 5, reproducing the LTE paper [V2]
    ("Set5", 2): 38.23, ("Set5", 3): 34.72, ("Set5", 4): 32.61, ("Set5", 6): 29.32, ("Set5", 8): 27.26,
    ("Set14", 2): 34.09, ("Set14", 3): 30.58, ("Set14", 4): 28.88, ("Set14", 6): 26.71, ("Set14", 8): 25.16,
    ("B100", 2): 32.36, ("B100", 3): 29.30, ("B100", 4): 27.77, ("B100", 6): 26.01, ("B100", 8): 24.95,
    ("Urban100", 2): 33.04, ("Urban100", 3): 28.97, ("Urban100", 4): 26.81, ("Urban100", 6): 24.28,
}

# The LIIF authors' EDSR-baseline checkpoint through their own code, measured on these machines
# (offline-weights.md): the figures our implementation must reproduce.
EDSR_LIIF_AUTHORS_CODE = {("Set5", 2): 37.988, ("Set5", 3): 34.400, ("Set5", 4): 32.237}

# which published row a model of ours is compared with
COMPARE = {
    "bicubic": ("bicubic (published)", BICUBIC),
    "liif-edsr-baseline": ("RDN-LIIF (paper; no EDSR-b benchmark table exists)", RDN_LIIF),
    "lte-edsr-baseline": ("RDN-LTE (paper)", RDN_LTE),
    "metasr-edsr-baseline": ("RDN-MetaSR (LIIF paper's re-implementation)", RDN_METASR),
    "liif-edsr-baseline-scratch": ("RDN-LIIF (paper)", RDN_LIIF),
}


def published(model: str, dataset: str, scale) -> tuple[str, float | None]:
    label, table = COMPARE.get(model, ("", {}))
    s = float(scale)
    return label, table.get((dataset, int(s) if s.is_integer() else s))
