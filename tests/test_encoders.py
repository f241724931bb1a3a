"""The RDN and SwinIR encoders: shapes on odd sizes, use inside LIIF/LTE, receptive radius, padding,
and a two-step training run. Tiny instances only (the defaults are checked by parameter count)."""
import json
import math

import pytest
import torch

from csr.cli import main
from csr.models.implicit import make_coord, make_cell
from csr.registry import make

TINY_RDN = {"name": "rdn", "args": {"D": 2, "C": 2, "G": 8, "G0": 8}}
TINY_SWINIR = {"name": "swinir", "args": {"embed_dim": 12, "depths": [2], "num_heads": [2], "window_size": 4}}
ENCODERS = {"rdn": TINY_RDN, "swinir": TINY_SWINIR,
            "swinir-body": {"name": "swinir", "args": {**TINY_SWINIR["args"], "out_channels": None,
                                                        "depths": [2, 1], "num_heads": [2, 3]}}}
MLP = {"name": "mlp", "args": {"out_dim": 3, "hidden_list": [16]}}


@pytest.mark.parametrize("name", list(ENCODERS))
def test_output_shape_on_odd_sizes(name):
    torch.manual_seed(0)
    enc = make(ENCODERS[name]).eval()
    for h, w in [(13, 7), (7, 13), (1, 5)]:
        with torch.no_grad():
            y = enc(torch.rand(2, 3, h, w))
        assert y.shape == (2, enc.out_dim, h, w)
        assert torch.isfinite(y).all()
    assert enc.out_dim == {"rdn": 8, "swinir": 64, "swinir-body": 12}[name]


@pytest.mark.parametrize("decoder", ["liif", "lte"])
@pytest.mark.parametrize("name", ["rdn", "swinir"])
def test_inside_liif_and_lte(name, decoder):
    torch.manual_seed(0)
    args = {"encoder_spec": ENCODERS[name], "imnet_spec": MLP}
    if decoder == "lte":
        args["hidden_dim"] = 16
    model = make({"name": decoder, "args": args})
    b, (h, w), out = 2, (13, 7), (26, 17)
    coord = make_coord(out).unsqueeze(0).expand(b, -1, -1)
    cell = make_cell(coord, out)
    pred = model(torch.rand(b, 3, h, w), coord, cell)
    assert pred.shape == (b, out[0] * out[1], 3)
    pred.square().mean().backward()
    for n, p in model.encoder.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), n
        assert p.grad.abs().sum() > 0, f"no gradient reaches encoder.{n}"


def _change_map(enc, shape, at, amount=5.0):
    """Max over channels of |features(x + amount at pixel `at`) - features(x)|, in float64."""
    torch.manual_seed(1)
    x = torch.rand(1, 3, *shape, dtype=torch.float64)
    y = x.clone()
    y[0, :, at[0], at[1]] += amount
    with torch.no_grad():
        return (enc(y) - enc(x)).abs().amax(dim=1)[0]


def _chebyshev(shape, at):
    yy, xx = torch.meshgrid(torch.arange(shape[0]), torch.arange(shape[1]), indexing="ij")
    return torch.maximum((yy - at[0]).abs(), (xx - at[1]).abs())


@pytest.mark.parametrize("args", [{"D": 2, "C": 2, "G": 8, "G0": 8},
                                  {"D": 1, "C": 3, "G": 4, "G0": 6, "kernel_size": 5}])
def test_rdn_receptive_radius_is_exact(args):
    torch.manual_seed(0)
    enc = make({"name": "rdn", "args": args}).double().eval()
    r = enc.receptive_radius
    assert r == (args.get("kernel_size", 3) // 2) * (2 + args["D"] * args["C"] + 1)
    shape, at = (2 * r + 5, 2 * r + 3), (r + 2, r + 1)   # the whole ring at distance r is inside
    diff, dist = _change_map(enc, shape, at), _chebyshev(shape, at)
    assert diff[dist > r].max() == 0, "a feature beyond receptive_radius depends on the pixel"
    assert diff[dist == r].max() > 0, "no feature at distance receptive_radius depends on the pixel"


def test_swinir_receptive_radius_bounds_dependence_and_tiling():
    torch.manual_seed(0)
    enc = make(TINY_SWINIR).double().eval()
    r, ws = enc.receptive_radius, enc.tile_align
    shape, at = (2 * r + 7, 2 * r + 5), (r + 3, r + 1)
    diff, dist = _change_map(enc, shape, at), _chebyshev(shape, at)
    assert diff[dist > r].max() == 0 and diff[dist <= 2].min() > 0
    # a tile whose origin is on the window grid reproduces the whole-image features wherever
    # they lie farther than receptive_radius from its inner edges (here: top and left)
    x = torch.rand(1, 3, 2 * r + 13, 2 * r + 9, dtype=torch.float64)
    oy, ox = 2 * ws, ws
    with torch.no_grad():
        full, tile = enc(x), enc(x[..., oy:, ox:])
    assert torch.allclose(tile[..., r:, r:], full[..., oy + r:, ox + r:], rtol=0, atol=1e-12)
    assert not torch.allclose(tile[..., :2, :2], full[..., oy:oy + 2, ox:ox + 2], atol=1e-6)  # edge differs


def test_swinir_pads_any_size():
    torch.manual_seed(0)
    enc = make(TINY_SWINIR).eval()
    for h, w in [(9, 9), (8, 8), (2, 3), (1, 1), (5, 12)]:   # reflection, none, replication
        x = torch.rand(1, 3, h, w)
        with torch.no_grad():
            y = enc(x)
        assert y.shape == (1, enc.out_dim, h, w) and torch.isfinite(y).all()
    # the batch is independent: padding and masks do not mix samples
    x = torch.rand(3, 3, 9, 9)
    with torch.no_grad():
        assert torch.allclose(enc(x)[1:2], enc(x[1:2]), atol=1e-5)


def test_default_sizes_and_checkpoint_names():
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        rdn, swin = make({"name": "rdn"}), make({"name": "swinir"})
    # config B: SFENet1/2, 16 blocks of 8 dense 3x3 convs (growth 64) + 1x1 fusion, GFF 1x1 + 3x3
    conv = lambda i, o, k: i * o * k * k + o  # noqa: E731
    block = sum(conv(64 + 64 * c, 64, 3) for c in range(8)) + conv(64 + 8 * 64, 64, 1)
    expect = conv(3, 64, 3) + conv(64, 64, 3) + 16 * block + conv(16 * 64, 64, 1) + conv(64, 64, 3)
    assert sum(p.numel() for p in rdn.parameters()) == expect == 21_973_952
    assert (rdn.out_dim, rdn.receptive_radius) == (64, 131)
    names = {"SFENet1.weight", "RDBs.15.convs.7.conv.0.weight", "RDBs.0.LFF.bias", "GFF.1.weight"}
    assert names <= set(rdn.state_dict())

    d, lin = 180, lambda i, o: i * o + o  # noqa: E731
    layer = 2 * 2 * d + lin(d, 3 * d) + lin(d, d) + 15 * 15 * 6 + lin(d, 2 * d) + lin(2 * d, d)
    expect = conv(3, d, 3) + 2 * d + 36 * layer + 6 * conv(d, d, 3) + 2 * d + conv(d, d, 3) + conv(d, 64, 3)
    assert sum(p.numel() for p in swin.parameters()) == expect == 11_603_044
    assert swin.out_dim == 64 and swin.receptive_radius >= 7 * 36
    assert {"conv_first.weight", "patch_embed.norm.weight", "layers.5.residual_group.blocks.5.attn.qkv.weight",
            "layers.0.residual_group.blocks.1.attn.relative_position_bias_table", "layers.2.conv.weight",
            "norm.bias", "conv_after_body.weight", "conv_before_upsample.0.weight"} <= set(swin.state_dict())


def test_tiny_training_run(tmp_path, data_root, capsys):
    from PIL import Image
    # validate on one small crop rather than a whole Set5 image: decoding 512x512 outputs is slow on CPU
    (tmp_path / "val").mkdir()
    bird = Image.open(data_root / "Set5" / "HR" / "bird.png").convert("RGB")
    bird.crop((0, 0, 64, 48)).save(tmp_path / "val" / "bird.png")
    cfg = f"""
name: tiny-rdn
model:
  name: liif
  args:
    encoder_spec: {json.dumps(TINY_RDN)}
    imnet_spec: {json.dumps(MLP)}
data: {{dirs: [Set5/HR], patch: 16, scale_min: 1.0, scale_max: 4.0, sample_q: 64}}
data_root: {data_root}
batch_size: 2
steps: 2
optimizer: {{lr: 1.0e-4, schedule: step, milestones: [1], gamma: 0.5}}
precision: fp32
val: {{dataset: "{tmp_path / "val"}", scale: 4, every: 2, limit: 1}}
out: {tmp_path / "run"}
"""
    path = tmp_path / "tiny.yaml"
    path.write_text(cfg)
    # in-process call of the entry point of `python -m csr train` (spares a second torch import)
    rc, printed = main(["train", "--config", str(path)]), capsys.readouterr()
    assert rc == 0, printed.err[-3000:]
    out = json.loads(printed.out.strip().splitlines()[-1])
    assert out["step"] == 2 and math.isfinite(out["best_val_psnr"])
    assert (tmp_path / "run" / "best.safetensors").is_file()
