"""Tests for the procedural structured scenes (csr/data/synthetic.py) and their use in training data."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from csr.data.synthetic import KINDS, coverage, pattern, sample_grid, scene  # noqa: E402
from csr.data.train import RandomScaleSR  # noqa: E402


def test_coverage_is_the_area_inside_each_pixel():
    """A half-plane edge at x = 10.5 px covers pixel 10 half, the pixels left of it fully."""
    y, x = sample_grid(16, 4)
    a = coverage(x < 10.5, 4)
    assert a.shape == (16, 16)
    assert np.all(a[:, :10] == 1) and np.all(a[:, 10] == 0.5) and np.all(a[:, 11:] == 0)
    d = coverage(x + y < 8, 4)   # a diagonal edge: partial pixels all along it, symmetric
    assert np.allclose(d, d.T) and ((d > 0) & (d < 1)).sum() >= 8


@pytest.mark.parametrize("kind", KINDS)
def test_each_pattern_draws_antialiased_edges(kind):
    """Every kind, at identity coordinates, makes both covered and uncovered pixels and, where a
    pattern edge crosses a pixel, a fractional coverage (not the aliased 0/1 of one sample)."""
    seen_partial = seen_both = False
    for seed in range(6):
        y, x = sample_grid(48, 4)
        m = pattern(kind, np.random.default_rng(seed), x - 24.3, y - 24.7, 48)
        a = coverage(m, 4)
        seen_both |= bool(a.min() == 0 and a.max() == 1)
        seen_partial |= bool(((a > 0) & (a < 1)).any())
    assert seen_both and seen_partial


def test_unknown_pattern_kind_is_a_clear_error():
    y, x = sample_grid(4, 1)
    with pytest.raises(ValueError, match="unknown pattern kind"):
        pattern("spiral", np.random.default_rng(0), x, y, 4)


def test_scene_is_a_function_of_its_generator(data_root):
    photos = RandomScaleSR(["train/T91"], root=data_root, patch=16, sample_q=8).images[:5]
    a = scene(np.random.default_rng(3), 40, photos=photos)
    assert a.shape == (40, 40, 3) and a.dtype == np.uint8
    assert np.array_equal(a, scene(np.random.default_rng(3), 40, photos=photos))
    assert not np.array_equal(a, scene(np.random.default_rng(4), 40, photos=photos))
    b = scene(np.random.default_rng(3), 40)   # without photos: flat random colours
    assert b.shape == (40, 40, 3) and b.std() > 0
    with pytest.raises(ValueError):
        scene(np.random.default_rng(0), 0)


def test_dataset_synthetic_fraction(data_root):
    """synthetic=0 keeps the photo items exactly; synthetic=1 gives scenes of the same shapes;
    a fraction outside [0, 1] is refused."""
    kw = dict(root=data_root, patch=16, sample_q=32, seed=2)
    plain = RandomScaleSR(["train/T91"], **kw)
    off = RandomScaleSR(["train/T91"], synthetic=0.0, **kw)
    on = RandomScaleSR(["train/T91"], synthetic=1.0, **kw)
    for i in range(3):
        p, o, s = plain[i], off[i], on[i]
        assert all(torch.equal(p[k], o[k]) for k in p)
        assert not torch.equal(p["lr"], s["lr"])
        assert {k: v.shape for k, v in p.items()} == {k: v.shape for k, v in s.items()}
        assert 0 <= s["gt"].min() and s["gt"].max() <= 1
        assert 2 / (16 * 4) - 1e-6 <= s["cell"][0, 0] <= 2 / 16 + 1e-6
        assert all(torch.equal(s[k], on[i][k]) for k in s)   # deterministic
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="synthetic"):
            RandomScaleSR(["train/T91"], synthetic=bad, **kw)
