"""Tiny, randomly initialised models and random queries shared by the model tests."""
import torch

from csr.models.implicit import make_coord
from csr.registry import make


ENC = {"name": "edsr-baseline", "args": {"n_resblocks": 1, "n_feats": 8}}


def mlp(hidden=(16, 16), out_dim=3):
    return {"name": "mlp", "args": {"out_dim": out_dim, "hidden_list": list(hidden)}}


def liif_spec(**flags):
    return {"name": "liif", "args": {"encoder_spec": ENC, "imnet_spec": mlp(), **flags}}


def lte_spec(**kw):
    return {"name": "lte", "args": {"encoder_spec": ENC, "imnet_spec": mlp(), "hidden_dim": 16, **kw}}


def metasr_spec():
    return {"name": "metasr", "args": {"encoder_spec": ENC, "imnet_spec": mlp((16,))}}


def lmf_spec(**kw):
    return {"name": "lmf", "args": {"encoder_spec": ENC, "hidden": 8, "depth": 3, "head_dim": 16, **kw}}


SPECS = {"liif": liif_spec, "lte": lte_spec, "metasr": metasr_spec, "lmf": lmf_spec,
         "lmf-pixel": lambda: lmf_spec(pixel_rel=True, pixel_scale=True)}


def build(spec, seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    model = make(spec).to(dtype).eval()
    # default inits leave biases small; perturb every parameter so no term is negligible
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def rand_lr(h=7, w=5, seed=1, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, h, w, generator=g, dtype=dtype)


def queries(h, w, n=300, seed=2, dtype=torch.float32):
    """Random coords in [-1, 1] plus the corners, the borders and the LR pixel boundaries/centres."""
    g = torch.Generator().manual_seed(seed)
    rand = torch.rand(n, 2, generator=g, dtype=dtype) * 2 - 1
    edge = torch.tensor([-1.0, -1 + 1e-7, -1 + 1e-3, 1 - 1e-3, 1 - 1e-7, 1.0], dtype=dtype)
    corners = torch.cartesian_prod(edge, edge)
    by = torch.arange(h + 1, dtype=dtype) * 2 / h - 1          # LR pixel boundaries along y
    bx = torch.arange(w + 1, dtype=dtype) * 2 / w - 1
    bounds = torch.cat([torch.stack([by, torch.full_like(by, 0.3)], -1),
                        torch.stack([torch.full_like(bx, -0.4), bx], -1)])
    centres = make_coord((h, w), dtype=dtype)
    coord = torch.cat([rand, corners, bounds, centres]).unsqueeze(0)
    # cells of random (anisotropic) output sizes, between x1 and x8
    cell = torch.empty_like(coord)
    cell[..., 0] = 2 / (h * (1 + 7 * torch.rand(coord.shape[1], generator=g, dtype=dtype)))
    cell[..., 1] = 2 / (w * (1 + 7 * torch.rand(coord.shape[1], generator=g, dtype=dtype)))
    return coord, cell
