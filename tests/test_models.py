"""Tests for the implicit decoders (LIIF, LTE, MetaSR, LMF): the LIIF formulation written out, the
ablation flags, one query interface (shapes, chunks, strips, grids) and each decoder's specifics.

The models here are tiny and randomly initialised (fixed seeds, ``tiny_models``); checkpoints, the
zoo and the golden test of the authors' weights are in ``test_zoo.py``.
"""
import math

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from csr import zoo  # noqa: E402
from csr.engine import upscale_tensor  # noqa: E402
from csr.models.implicit import grid_coords, make_cell, make_coord  # noqa: E402
from csr.registry import load_checkpoint, read_checkpoint, save_checkpoint  # noqa: E402
from tiny_models import SPECS, build, liif_spec, lmf_spec, lte_spec, queries, rand_lr  # noqa: E402


pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------ the LIIF reference formulation

def reference_liif(model, lr, coord, cell):
    """The LIIF authors' formulation, written out: unfold, grid_sample 'nearest', full MLP."""
    feat = model.encoder((lr - 0.5) / 0.5)
    b, c, h, w = feat.shape
    if model.feat_unfold:
        feat = F.unfold(feat, 3, padding=1).view(b, c * 9, h, w)
    feat_coord = make_coord((h, w), dtype=lr.dtype, flatten=False).permute(2, 0, 1).unsqueeze(0).expand(b, 2, h, w)
    if model.local_ensemble:
        shifts, eps = [(-1, -1), (-1, 1), (1, -1), (1, 1)], 1e-6
    else:
        shifts, eps = [(0, 0)], 0.0
    preds, areas = [], []
    for vy, vx in shifts:
        c_ = coord.clone()
        c_[..., 0] += vy / h + eps
        c_[..., 1] += vx / w + eps
        c_.clamp_(-1 + 1e-6, 1 - 1e-6)
        grid = c_.flip(-1).unsqueeze(1)
        q_feat = F.grid_sample(feat, grid, mode="nearest", align_corners=False)[:, :, 0, :].permute(0, 2, 1)
        q_coord = F.grid_sample(feat_coord, grid, mode="nearest", align_corners=False)[:, :, 0, :].permute(0, 2, 1)
        rel = coord - q_coord
        rel[..., 0] *= h
        rel[..., 1] *= w
        inp = [q_feat, rel]
        if model.cell_decode:
            rel_cell = cell.clone()
            rel_cell[..., 0] *= h
            rel_cell[..., 1] *= w
            inp.append(rel_cell)
        preds.append(model.imnet(torch.cat(inp, dim=-1)))
        areas.append((rel[..., 0] * rel[..., 1]).abs() + 1e-9)
    if len(preds) == 1:
        out = preds[0]
    else:
        total = torch.stack(areas).sum(0)
        areas[0], areas[3] = areas[3], areas[0]
        areas[1], areas[2] = areas[2], areas[1]
        out = 0
        for p, a in zip(preds, areas):
            out = out + p * (a / total).unsqueeze(-1)
    return out * 0.5 + 0.5


FLAGS = [{}, {"feat_unfold": False}, {"cell_decode": False}, {"local_ensemble": False},
         {"feat_unfold": False, "cell_decode": False, "local_ensemble": False}]


@pytest.mark.parametrize("flags", FLAGS, ids=lambda f: ",".join(f"{k}=0" for k in f) or "all-on")
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-10)], ids=["fp32", "fp64"])
def test_liif_matches_reference(flags, dtype, tol):
    model = build(liif_spec(**flags), dtype=dtype)
    lr = rand_lr(7, 5, dtype=dtype)
    coord, cell = queries(7, 5, dtype=dtype)
    with torch.no_grad():
        ours = model(lr, coord, cell)
        ref = reference_liif(model, lr, coord, cell)
    assert ours.shape == ref.shape == (1, coord.shape[1], 3)
    assert ours.dtype == dtype
    diff = (ours - ref).abs().max().item()
    assert diff < tol, diff
    assert ref.std() > 1e-3  # the comparison is not between two constants


@pytest.mark.parametrize("flag", ["feat_unfold", "cell_decode", "local_ensemble"])
def test_liif_each_flag_changes_output(flag):
    lr = rand_lr(7, 5)
    coord, cell = queries(7, 5)
    on = build(liif_spec())
    off = build(liif_spec(**{flag: False}))
    if flag == "local_ensemble":  # same weights: only the ensemble differs
        off.load_state_dict(on.state_dict())
    with torch.no_grad():
        a, b = on(lr, coord, cell), off(lr, coord, cell)
    assert (a - b).abs().max() > 1e-3


def test_liif_cell_decode_semantics():
    lr = rand_lr(7, 5)
    coord, cell = queries(7, 5)
    with torch.no_grad():
        on, off = build(liif_spec()), build(liif_spec(cell_decode=False))
        assert (on(lr, coord, cell) - on(lr, coord, cell * 2)).abs().max() > 1e-4
        assert torch.equal(off(lr, coord, cell), off(lr, coord, cell * 2))


def test_liif_without_ensemble_is_piecewise_constant_in_latent():
    """local_ensemble=False: the nearest latent switches at an LR pixel boundary, so the output jumps."""
    model = build(liif_spec(local_ensemble=False))
    lr = rand_lr(7, 5)
    state = model.encode(lr)
    c = torch.tensor([[[0.0, 0.0]]])
    cell = torch.full_like(c, 0.1)
    with torch.no_grad():
        # the function jumps at a pixel boundary (nearest latent switches)
        bound_y = 2 * 4 / 7 - 1
        lo = model.query(state, c + torch.tensor([bound_y - 1e-4, 0.0]), cell)
        hi = model.query(state, c + torch.tensor([bound_y + 1e-4, 0.0]), cell)
    assert (lo - hi).abs().max() > 1e-3


def test_neighbours_are_the_four_surrounding_latents_with_area_weights():
    model = build(liif_spec())
    state = model.encode(rand_lr(7, 5))
    # a query a quarter LR pixel right and down of latent (2, 1)'s centre, and one on latent (5, 3)
    at = lambda y, x: torch.tensor([[[(2 * y + 1) / 7 - 1, (2 * x + 1) / 5 - 1]]], dtype=torch.float64)  # noqa: E731
    found, wts = model.neighbours(state, at(2.25, 1.25))
    assert sorted(int(i) for i, _ in found) == [2 * 5 + 1, 2 * 5 + 2, 3 * 5 + 1, 3 * 5 + 2]
    w = {int(i): float(wt) for (i, _), wt in zip(found, wts)}
    assert abs(sum(w.values()) - 1) < 1e-6
    # area of the rectangle to the opposite latent: 0.75^2, 0.75*0.25, 0.25*0.75, 0.25^2
    expect = {11: 0.5625, 12: 0.1875, 16: 0.1875, 17: 0.0625}
    assert all(abs(w[k] - v) < 1e-6 for k, v in expect.items())
    rel = {int(i): r.view(2).tolist() for i, r in found}   # offsets, 2 units per LR pixel
    assert max(abs(a - b) for a, b in zip(rel[11], [0.5, 0.5])) < 1e-9
    assert max(abs(a - b) for a, b in zip(rel[17], [-1.5, -1.5])) < 1e-9
    found, wts = model.neighbours(state, at(5, 3))
    top = max(range(4), key=lambda j: float(wts[j]))
    assert int(found[top][0]) == 5 * 5 + 3 and float(wts[top]) > 0.999
    model.local_ensemble = False
    found, wts = model.neighbours(state, at(2.4, 1.4))
    assert len(found) == 1 and int(found[0][0]) == 11 and float(wts[0]) == 1


# ------------------------------------------------------------------ shapes and chunking

@pytest.mark.parametrize("name", list(SPECS))
@pytest.mark.parametrize("out_hw", [(17, 11), (7, 30), (30, 6), (7, 5), (1, 1), (13, 64)])
def test_upscale_tensor_shapes(name, out_hw):
    model = build(SPECS[name]())
    lr = rand_lr(7, 5)
    out = upscale_tensor(model, lr, out_hw)
    assert out.shape == (1, 3, *out_hw)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", list(SPECS))
@pytest.mark.parametrize("out_hw", [(17, 11), (7, 30), (23, 9)])
def test_chunked_equals_one_shot(name, out_hw):
    model = build(SPECS[name]())
    lr = rand_lr(7, 5)
    a = upscale_tensor(model, lr, out_hw, chunk=37)
    b = upscale_tensor(model, lr, out_hw, chunk=1 << 30)
    assert (a - b).abs().max() < 1e-6


@pytest.mark.parametrize("name", list(SPECS))
@pytest.mark.parametrize("strip", [5, 16, 30])   # 1, 3 and 6 LR rows of a 5-wide map
def test_strips_equal_whole_map(name, strip):
    """At inference a decoder may compute its per-pixel maps strip by strip as the queries reach
    them (``strip_pixels``, one row of context either side): the same output as with the whole
    map, including at the image's top and bottom edges, for scales up and down and for
    queries in any order (each strip is recomputed where a query needs it)."""
    model = build(SPECS[name]())
    lr = rand_lr(11, 5)
    whole = upscale_tensor(model, lr, (29, 13))
    model.strip_pixels = strip
    assert (upscale_tensor(model, lr, (29, 13), chunk=13) - whole).abs().max() < 1e-6
    assert (upscale_tensor(model, lr, (7, 4)) - upscale_tensor(build(SPECS[name]()), lr, (7, 4))).abs().max() < 1e-6
    coord = make_coord((29, 13)).unsqueeze(0).flip(1)   # bottom to top
    with torch.no_grad():
        state = model.encode(lr)
        assert "encoded" in state   # really lazy
        out = model.query(state, coord, make_cell(coord, (29, 13)))
    assert (out.flip(1).view(29, 13, 3).permute(2, 0, 1) - whole[0]).abs().max() < 1e-6


def test_lmf_maps_stay_float32_under_bf16_autocast():
    """Its per-pixel gains are 1 + s: a bf16 map would round them to steps of 2^-7."""
    model = build(SPECS["lmf-pixel"]())
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        state = model.encode(rand_lr(7, 5))
    assert state["mod"].dtype == torch.float32


@pytest.mark.parametrize("name", list(SPECS))
def test_no_queries_no_error(name):
    """Zero queries give a (B, 0, 3) answer, lazily prepared maps or not."""
    model = build(SPECS[name]())
    model.strip_pixels = 5
    with torch.no_grad():
        state = model.encode(rand_lr(11, 5))
        none = torch.zeros(1, 0, 2)
        assert model.query(state, none, none).shape == (1, 0, 3)


@pytest.mark.parametrize("name", list(SPECS))
def test_query_grid_equals_query(name):
    """The engine's per-row, per-column look-ups give the same numbers as per-query ones."""
    model = build(SPECS[name]())
    with torch.no_grad():
        state = model.encode(rand_lr(7, 5))
        ys = torch.linspace(-1.1, 1.05, 9, dtype=torch.float64)
        xs = torch.linspace(-0.97, 1.2, 6, dtype=torch.float64)
        cell = torch.tensor([0.13, 0.31], dtype=torch.float64)
        coord = grid_coords(ys, xs)
        a = model.query_grid(state, ys, xs, cell)
        b = model.query(state, coord, cell.expand_as(coord))
    assert a.shape == (1, 54, 3) and torch.equal(a, b)
    with torch.no_grad(), pytest.raises(ValueError, match="one image at a time"):
        model.query_grid(model.encode(torch.rand(2, 3, 7, 5)), ys, xs, cell)


@pytest.mark.parametrize("name", list(SPECS))
def test_upscale_tensor_equals_forward(name):
    """upscale_tensor's grid and cells are make_coord/make_cell of the output size."""
    model = build(SPECS[name]())
    lr = rand_lr(7, 5)
    out = upscale_tensor(model, lr, (17, 11))
    coord = make_coord((17, 11)).unsqueeze(0)
    cell = make_cell(coord, (17, 11))
    with torch.no_grad():
        ref = model(lr, coord, cell).view(17, 11, 3).permute(2, 0, 1)
    assert (out[0] - ref).abs().max() < 1e-6


def test_upscale_tensor_float64():
    model = build(liif_spec(), dtype=torch.float64)
    lr = rand_lr(7, 5, dtype=torch.float64)
    out = upscale_tensor(model, lr, (17, 11))
    assert out.dtype == torch.float64 and out.shape == (1, 3, 17, 11)


def test_upscale_tensor_rejects_batches():
    model = build(liif_spec())
    with pytest.raises(ValueError):
        upscale_tensor(model, torch.rand(2, 3, 7, 5), (14, 10))


REL, SCALE = {"pixel_rel": True}, {"pixel_scale": True}


@pytest.mark.parametrize("start, grow", [({}, REL), ({}, SCALE), ({}, {**REL, **SCALE}), (REL, SCALE)],
                         ids=["plain+rel", "plain+scale", "plain+both", "rel+scale"])
def test_lmf_pixel_heads_start_as_the_smaller_decoder_and_warm_start(tmp_path, start, grow):
    """pixel_rel (per-pixel offset weights) and pixel_scale (per-pixel gains) start at the identity:
    a checkpoint without them loads into a decoder with them (init_from + init_prefixes, as growing
    a trained decoder does) and computes the same function; once either moves, the output changes."""
    from csr.train import build as build_run
    small = build(lmf_spec(**start), seed=4)
    path = save_checkpoint(small, lmf_spec(**start), tmp_path / "stage1.safetensors")
    cfg = {"model": lmf_spec(**{**start, **grow}), "init_from": str(path),
           "init_prefixes": ["encoder.", "head.", "rel_head.", "pos.", "layers.", "out."], "freeze": ["encoder."]}
    grown = build_run(cfg).eval()
    assert not any(p.requires_grad for p in grown.encoder.parameters())
    new = [n for n in ("rel_head", "scale_head") if getattr(grown, n) is not None and getattr(small, n) is None]
    assert new
    lr = rand_lr(7, 5)
    coord, cell = queries(7, 5, n=50)
    for name in new:
        head = getattr(grown, name)
        assert head.weight.requires_grad and head.weight.abs().sum() == 0 and head.bias.abs().sum() == 0
        with torch.no_grad():
            # the same function (to float rounding: with P, A's offset columns are added per pixel)
            assert (small(lr, coord, cell) - grown(lr, coord, cell)).abs().max() < 1e-6
            head.bias.add_(0.1)
            assert (small(lr, coord, cell) - grown(lr, coord, cell)).abs().max() > 1e-3
            head.bias.zero_()


def test_init_from_a_decoder_only_checkpoint_pulls_its_encoder(tmp_path, monkeypatch):
    """A run's exported best weights (decoder only, ``encoder_from`` a zoo name) used as
    ``init_from`` bring the named encoder's weights along, as loading them for inference does."""
    from csr.train import build as build_run, export
    base = build(lmf_spec(), seed=5)
    base_path = save_checkpoint(base, lmf_spec(), tmp_path / "base.safetensors")
    monkeypatch.setattr(zoo, "checkpoint_path", lambda name, **kw: base_path)
    stage1 = build(lmf_spec(), seed=6)
    stage1.encoder.load_state_dict(base.encoder.state_dict())
    path = tmp_path / "stage1.safetensors"
    export(stage1, {"model": lmf_spec(), "ship": {"encoder_from": "liif-edsr-baseline"}, "out": str(tmp_path)}, path)
    assert not any(k.startswith("encoder.") for k in read_checkpoint(path)[1])
    grown = build_run({"model": lmf_spec(pixel_rel=True), "init_from": str(path),
                       "init_prefixes": ["encoder.", "head.", "pos.", "layers.", "out."]}).eval()
    lr = rand_lr(7, 5)
    coord, cell = queries(7, 5, n=50)
    with torch.no_grad():
        assert (stage1(lr, coord, cell) - grown(lr, coord, cell)).abs().max() < 1e-6
    # an encoder that was trained after init no longer is the named one: it ships with the decoder
    with torch.no_grad():
        next(grown.encoder.parameters()).add_(1e-3)
    export(grown, {"model": lmf_spec(pixel_rel=True), "ship": {"encoder_from": "liif-edsr-baseline"},
                   "out": str(tmp_path)}, tmp_path / "tuned.safetensors")
    _, sd, extra = read_checkpoint(tmp_path / "tuned.safetensors")
    assert "encoder_from" not in extra and set(sd) == set(grown.state_dict())
    with torch.no_grad():
        assert torch.equal(load_checkpoint(tmp_path / "tuned.safetensors").eval()(lr, coord, cell), grown(lr, coord, cell))


@pytest.mark.parametrize("kernel", ["gemm", "conv"])
def test_rows_linear_kernels_equal_linear(monkeypatch, kernel):
    """Both kernels the per-query layers may run on compute F.linear (with and without bias, any
    width); with gradients, or on non-contiguous rows, it is F.linear itself; whole models give
    the same output on either."""
    from csr.models import mlp as mlp_mod
    monkeypatch.setenv("CSR_ROWS_KERNEL", kernel)
    g = torch.Generator().manual_seed(0)
    for m, k, n in [(1, 3, 5), (37, 16, 16), (300, 64, 3)]:
        x, w, b = (torch.randn(*s, generator=g) for s in [(m, k), (n, k), (n,)])
        with torch.no_grad():
            for bias in (None, b):
                y = mlp_mod.rows_linear(x, w, bias)
                assert y.shape == (m, n) and y.is_contiguous()
                assert (y - F.linear(x, w, bias)).abs().max() < 1e-5
            assert torch.equal(mlp_mod.rows_linear(x.t().contiguous().t(), w, b), F.linear(x.t().contiguous().t(), w, b))
    with torch.no_grad():
        assert mlp_mod.rows_linear(torch.zeros(0, 3), w[:, :3], b).shape == (0, n)
    x.requires_grad_(True)
    mlp_mod.rows_linear(x, w, b).sum().backward()
    assert x.grad is not None
    lr = rand_lr(7, 5)
    for name in ("liif", "lmf-pixel"):
        model = build(SPECS[name]())
        monkeypatch.setenv("CSR_ROWS_KERNEL", "gemm")
        a = upscale_tensor(model, lr, (13, 9))
        monkeypatch.setenv("CSR_ROWS_KERNEL", kernel)
        assert (upscale_tensor(model, lr, (13, 9)) - a).abs().max() < 1e-6


def test_rows_linear_picks_a_kernel_by_timing(monkeypatch):
    from csr.models import mlp as mlp_mod
    state = torch.get_rng_state()
    assert mlp_mod._pick_kernel() in ("gemm", "conv")
    assert torch.equal(torch.get_rng_state(), state)   # users' seeds untouched
    monkeypatch.setenv("CSR_ROWS_KERNEL", "fast")
    with torch.no_grad(), pytest.raises(ValueError, match="gemm or conv"):
        mlp_mod.rows_linear(torch.zeros(4, 3), torch.zeros(2, 3))


# ------------------------------------------------------------------ LTE specifics

def test_lte_cell_clip():
    lr = rand_lr(7, 5)
    coord, _ = queries(7, 5, n=100)

    def cell_for(scale):
        c = torch.empty_like(coord)
        c[..., 0], c[..., 1] = 2 / (7 * scale), 2 / (5 * scale)
        return c

    clipped = build(lte_spec(cell_clip=4))
    free = build(lte_spec(cell_clip=None))
    with torch.no_grad():
        assert torch.equal(clipped(lr, coord, cell_for(8)), clipped(lr, coord, cell_for(4)))
        # below the clip, the cell still matters
        assert (clipped(lr, coord, cell_for(2)) - clipped(lr, coord, cell_for(4))).abs().max() > 1e-5
        assert (free(lr, coord, cell_for(8)) - free(lr, coord, cell_for(4))).abs().max() > 1e-5


def test_lte_fourier_features():
    """LTE's decode, with and without gradients, against its formula written out: an MLP on
    amplitudes times cos/sin(pi (f . rel + phase(cell))), each frequency a (f_y, f_x) pair."""
    model = build(lte_spec(add_bilinear=False))
    state = model.encode(rand_lr(7, 5))
    g = torch.Generator().manual_seed(3)
    idx = torch.randint(0, 35, (1, 50), generator=g)
    rel, rel_cell = torch.randn(1, 50, 2, generator=g), torch.rand(1, 50, 2, generator=g)
    with torch.no_grad():
        coef, freq = state["coef"][0, idx[0]], state["freq"][0, idx[0]]
        arg = freq.view(50, -1, 2) @ rel[0].unsqueeze(-1)   # (50, K, 1): f_y * dy + f_x * dx
        arg = math.pi * (arg[..., 0] + rel_cell[0] @ model.phase.weight.t())
        want = model.imnet(coef * torch.cat([torch.cos(arg), torch.sin(arg)], -1))
        fast = model.decode(state, idx, rel, rel_cell)[0]
    with torch.enable_grad():
        taped = model.decode(state, idx, rel, rel_cell)[0]
    assert taped.requires_grad
    assert (fast - want).abs().max() < 1e-5 and (taped.detach() - want).abs().max() < 1e-5


def test_lte_bilinear_skip():
    model = build(lte_spec())
    with torch.no_grad():
        model.imnet.layers[-1].weight.zero_()
        model.imnet.layers[-1].bias.zero_()
    lr = rand_lr(7, 5)
    # on an output grid: bilinear upsampling (half-pixel centres, edges clamped)
    for hw in [(17, 11), (7, 30), (3, 2)]:
        out = upscale_tensor(model, lr, hw)
        ref = F.interpolate(lr, size=hw, mode="bilinear", align_corners=False)
        assert (out - ref).abs().max() < 1e-6
    # at arbitrary coordinates: grid_sample with border padding
    coord, cell = queries(7, 5)
    with torch.no_grad():
        out = model(lr, coord, cell)
    ref = F.grid_sample(lr, coord.flip(-1).unsqueeze(1), mode="bilinear", padding_mode="border",
                        align_corners=False)[:, :, 0].transpose(1, 2)
    assert (out - ref).abs().max() < 1e-6
