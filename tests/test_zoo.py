"""Tests for checkpoints, the registry, the model zoo and hub, the shipped weights, and the golden
reproduction of the LIIF authors' checkpoint on Set5 (marked ``weights``)."""
import os
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import csr  # noqa: E402
from csr import hub, zoo  # noqa: E402
from csr.registry import fingerprint, load_checkpoint, make, read_checkpoint, registered, save_checkpoint  # noqa: E402
from tiny_models import SPECS, build, liif_spec, queries, rand_lr  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------ checkpoints and registry

@pytest.mark.parametrize("name", list(SPECS))
def test_checkpoint_round_trip(tmp_path, name):
    spec = SPECS[name]()
    model = build(spec, seed=3)
    path = save_checkpoint(model, spec, tmp_path / "m.safetensors", extra={"note": "x", "step": 5})
    loaded = load_checkpoint(path).eval()
    got_spec, sd, extra = read_checkpoint(path)
    assert got_spec == spec
    assert extra == {"note": "x", "step": 5}
    assert set(sd) == set(model.state_dict())
    lr = rand_lr(7, 5)
    coord, cell = queries(7, 5, n=50)
    with torch.no_grad():
        assert torch.equal(model(lr, coord, cell), loaded(lr, coord, cell))
    assert not list(tmp_path.glob("*.part"))  # the atomic write left nothing behind


def test_fingerprint_follows_the_tensors_not_the_file(tmp_path):
    spec = liif_spec()
    model = build(spec, seed=3)
    a = save_checkpoint(model, spec, tmp_path / "a.safetensors")
    b = save_checkpoint(model, spec, tmp_path / "b.safetensors", extra={"val_psnr": 1.0})
    assert a.read_bytes() != b.read_bytes() and fingerprint(a) == fingerprint(b)
    assert len(fingerprint(a)) == 12
    with torch.no_grad():   # one weight's last bit
        w = next(model.parameters())
        w.view(-1)[0] = torch.nextafter(w.view(-1)[0], torch.tensor(1.0))
    assert fingerprint(save_checkpoint(model, spec, tmp_path / "c.safetensors")) != fingerprint(a)


def test_read_checkpoint_rejects_foreign_safetensors(tmp_path):
    from safetensors.torch import save_file
    p = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(p))
    with pytest.raises(ValueError, match="not a csr checkpoint"):
        read_checkpoint(p)
    with pytest.raises(ValueError):
        load_checkpoint(p)
    with pytest.raises(FileNotFoundError):
        read_checkpoint(tmp_path / "missing.safetensors")


def test_registry_unknown_name_lists_names():
    with pytest.raises(KeyError) as exc:
        make({"name": "no-such-model", "args": {}})
    msg = str(exc.value)
    for n in ("liif", "lte", "metasr", "edsr-baseline", "mlp"):
        assert n in msg
    assert {"liif", "lte", "metasr", "edsr", "edsr-baseline", "mlp"} <= set(registered())
    with pytest.raises(ValueError):
        make("liif")


def test_registry_args_override():
    spec = {"name": "edsr-baseline", "args": {"n_resblocks": 1, "n_feats": 8}}
    enc = make(spec, args={"n_feats": 4})
    assert enc.out_dim == 4 and len(enc.body) == 2
    assert spec["args"] == {"n_resblocks": 1, "n_feats": 8}  # the spec is not mutated
    assert make(spec).out_dim == 8
    m = make(liif_spec(), args={"feat_unfold": False})
    assert m.imnet.in_dim == 8 + 2 + 2


def test_registry_load_sd():
    spec = {"name": "mlp", "args": {"in_dim": 4, "out_dim": 3, "hidden_list": [5]}}
    a = make(spec)
    b = make({**spec, "sd": a.state_dict()}, load_sd=True)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k])


# ------------------------------------------------------------------ zoo and hub

def test_zoo_missing_weights_message(tmp_path, monkeypatch):
    monkeypatch.setenv("CSR_CACHE", str(tmp_path))
    monkeypatch.delenv("CSR_AUTO_DOWNLOAD", raising=False)
    with pytest.raises(hub.WeightsMissing) as exc:
        zoo.checkpoint_path("liif-edsr-baseline")
    assert "python -m csr download liif-edsr-baseline" in str(exc.value)
    assert isinstance(exc.value, FileNotFoundError)
    with pytest.raises(hub.WeightsMissing):
        csr.create_model("liif-edsr-baseline")
    assert "liif-edsr-baseline" not in zoo.list_models(available_only=True)
    for name in zoo.list_models():   # a shipped decoder that names the missing encoder is not usable
        path = zoo.checkpoint_path(name, must_exist=False)
        if zoo.ZOO[name][0] == "shipped" and read_checkpoint(path, header_only=True)[2].get("encoder_from"):
            assert name not in zoo.list_models(available_only=True)
    assert "lmf-edsr-baseline" not in zoo.list_models(available_only=True)  # sits on liif-edsr-baseline
    assert "liif-edsr-baseline" in zoo.list_models()


def test_list_models_only_names_that_can_be_created():
    for name in zoo.list_models():
        assert zoo.ZOO[name][0] == "download" or zoo.checkpoint_path(name).is_file()
    unshipped = [n for n, (kind, _) in zoo.ZOO.items()
                 if kind == "shipped" and not (zoo.WEIGHTS_DIR / f"{n}.safetensors").is_file()]
    assert not set(unshipped) & set(zoo.list_models())


def test_zoo_unknown_name():
    with pytest.raises(KeyError, match="liif-edsr-baseline"):
        zoo.checkpoint_path("no-such-model")
    with pytest.raises(KeyError):
        csr.create_model("no-such-model")


def test_create_model_from_spec_and_path(tmp_path):
    spec = liif_spec()
    m = csr.create_model(spec)
    assert type(m).__name__ == "LIIF"
    path = save_checkpoint(build(spec), spec, tmp_path / "m.safetensors")
    m2 = csr.create_model(str(path))
    assert m2.meta["spec"] == spec and not m2.training


def test_hub_fetch_rejects_wrong_file(tmp_path, monkeypatch):
    monkeypatch.setenv("CSR_CACHE", str(tmp_path / "cache"))
    bad = tmp_path / "edsr-baseline-liif.pth"
    bad.write_bytes(b"not the weights")
    with pytest.raises(ValueError, match="sha256"):
        hub.fetch("liif-edsr-baseline", source=bad)
    assert not hub.ASSETS["liif-edsr-baseline"].path.exists()
    with pytest.raises(KeyError):
        hub.fetch("no-such-asset")


# ------------------------------------------------------------------ golden: the authors' checkpoint

SET5_GOLDEN = {
    4: ({"baby": 33.818, "bird": 35.111, "butterfly": 28.685, "head": 32.912, "woman": 30.662}, 32.237),
}
SET5_MEAN_SLOW = {2: 37.988, 3: 34.400}


def _need_weights():
    if not hub.ASSETS["liif-edsr-baseline"].path.is_file():
        msg = "liif-edsr-baseline weights not cached (python -m csr download liif-edsr-baseline)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)


@pytest.fixture(scope="module")
def liif_pretrained():
    _need_weights()
    return csr.create_model("liif-edsr-baseline")


@pytest.mark.weights
def test_golden_set5_x4(data_root, liif_pretrained):
    from csr.evaluation import evaluate
    r = evaluate(liif_pretrained, "Set5", [4], metrics=("psnr",), root=data_root, progress=False)["results"]["4"]
    per_image, mean = SET5_GOLDEN[4]
    got = {row["name"]: row["psnr"] for row in r["images"]}
    assert set(got) == set(per_image)
    for name, want in per_image.items():
        assert abs(got[name] - want) < 0.01, (name, got[name], want)
    assert abs(r["psnr"] - mean) < 0.01, r["psnr"]


@pytest.mark.weights
@pytest.mark.slow
@pytest.mark.parametrize("scale", [2, 3])
def test_golden_set5_x2_x3(data_root, liif_pretrained, scale):
    from csr.evaluation import evaluate
    r = evaluate(liif_pretrained, "Set5", [scale], metrics=("psnr",), root=data_root, progress=False)
    psnr = r["results"][str(scale)]["psnr"]
    assert abs(psnr - SET5_MEAN_SLOW[scale]) < 0.01, psnr


def test_shipped_weights_are_small_and_self_describing():
    """What ships in csr/weights is ours, a few MB, and names its architecture and validation."""
    files = sorted(zoo.WEIGHTS_DIR.glob("*.safetensors"))
    assert files
    for path in files:
        assert path.stat().st_size < 8 * 2 ** 20, f"{path.name}: {path.stat().st_size / 2 ** 20:.1f} MB"
        assert path.stem in zoo.ZOO and zoo.ZOO[path.stem][0] == "shipped"
        spec, _, extra = read_checkpoint(path, header_only=True)
        assert spec["name"] and extra["val_psnr"] > 0 and extra.get("config", "").startswith(path.stem)


def test_check_checkout_names_the_clone_and_the_fix(tmp_path):
    """Benchmarks, notebooks and tests refuse a csr imported from another clone (a `pip install -e`
    made elsewhere), with the command that points it back."""
    import csr
    repo = Path(csr.__file__).resolve().parents[1]
    csr.check_checkout(repo)
    with pytest.raises(RuntimeError, match=r"not from this checkout .*pip install --no-deps -e"):
        csr.check_checkout(tmp_path)
