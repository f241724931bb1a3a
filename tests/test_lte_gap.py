"""benchmarks/lte_gap.py: its frequency units, and a run of the script on one image."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from csr.registry import make

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("lte_gap", REPO / "benchmarks" / "lte_gap.py")
lte_gap = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lte_gap)

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_lte():
    torch.manual_seed(0)
    return make({"name": "lte", "args": {
        "encoder_spec": {"name": "edsr-baseline", "args": {"n_resblocks": 1, "n_feats": 8}}, "hidden_dim": 8,
        "imnet_spec": {"name": "mlp", "args": {"out_dim": 3, "hidden_list": [8]}}}}).eval()


def test_frequencies_are_cycles_per_lr_pixel():
    """A frequency reported as f is f periods of LTE's basis per LR pixel: with the estimator set
    to one pair (fy, fx) = (0, 1) and no phase, the decoder gives the same output one LR pixel
    further along x and another half a pixel further."""
    m = tiny_lte()
    with torch.no_grad():
        m.freq.weight.zero_()
        m.freq.bias.zero_()
        m.freq.bias[1] = 1.0
        m.phase.weight.zero_()
    lr = np.random.default_rng(0).integers(0, 256, (6, 7, 3), dtype=np.uint8)
    f = lte_gap.frequencies(m, lr)
    assert f.shape == (6 * 7 * 4,)
    assert np.allclose(f[0::4], 1.0) and np.allclose(np.delete(f, np.s_[0::4]), 0.0)
    x = torch.from_numpy(lr).permute(2, 0, 1)[None].float().div(255)
    with torch.no_grad():
        state = m.prepare(m.encoder(m.normalise(x)))
        rel = torch.tensor([[[0.1, 0.3], [0.1, 0.3 + 2.0], [0.1, 0.3 + 1.0]]])   # LIIF's units: 2 per LR pixel
        out = m.decode(state, torch.zeros(1, 3, dtype=torch.long), rel, torch.full((1, 3, 2), 0.5))
    assert torch.allclose(out[0, 0], out[0, 1], atol=1e-5)
    assert not torch.allclose(out[0, 0], out[0, 2], atol=1e-3)
    assert lte_gap.frequencies(make({"name": "mlp", "args": {"in_dim": 2, "out_dim": 3, "hidden_list": [4]}}), lr) is None


def test_script_on_one_image(data_root, capsys):
    from csr.zoo import _available
    if not all(_available(n) for n in ("lte-edsr-baseline", "liif-edsr-baseline")):
        pytest.skip("weights not downloaded here (python -m csr download)")
    assert lte_gap.main(["--dataset", "Set5", "--limit", "1", "--no-write"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| baby |"))
    lte, liif, diff = (float(x) for x in row.split("|")[2:5])
    assert 30 < lte < 40 and 30 < liif < 40 and diff == pytest.approx(lte - liif, abs=2e-3)
    assert "cycles per LR pixel" in out
