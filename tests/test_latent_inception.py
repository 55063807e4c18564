"""The FID Inception-v3 (``adasym_jax.latent.inception``) with random weights of the real structure.

The real weights cannot be fetched here, so the state dict is random; the key names and shapes
come from the Flax tree through an inverse mapping written in this file and are cross-checked
against shapes read off the reference architecture (torchvision's Inception-v3 with
pytorch-fid's FID blocks). Independent truths: a numpy conv + batch norm in PyTorch layout, a
numpy bilinear resize with PyTorch's ``align_corners=False`` rule, and the pooling definitions.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adasym_jax.cli import main
from adasym_jax.latent import inception as inc

N_IMAGES = 4  # one batch size everywhere: the network compiles once for the whole module

# Flax leaf -> PyTorch state-dict suffix (written here, independently of the module's table)
_SUFFIX = {
    "kernel": "conv.weight",
    "scale": "bn.weight",
    "bias": "bn.bias",
    "mean": "bn.running_mean",
    "var": "bn.running_var",
}


def _leaves(tree, prefix=()):
    for k, v in tree.items():
        if isinstance(v, dict):
            yield from _leaves(v, prefix + (k,))
        else:
            yield prefix + (k,), v


def torch_shapes() -> dict[str, tuple]:
    """State-dict names and PyTorch shapes (OIHW convs) implied by the Flax parameter tree."""
    out = {}
    for path, spec in _leaves(inc.param_shapes()):
        name = ".".join(path[:-1]) + "." + _SUFFIX[path[-1]]
        shape = tuple(spec.shape)
        if path[-1] == "kernel":  # HWIO -> OIHW
            kh, kw, cin, cout = shape
            shape = (cout, cin, kh, kw)
        out[name] = shape
    return out


@pytest.fixture(scope="module")
def shapes():
    return torch_shapes()


@pytest.fixture(scope="module")
def state_dict(shapes):
    """Random weights with the real names and shapes: He-scaled convs, plausible BN stats,
    plus the entries a real file has that the loader must ignore."""
    rng = np.random.default_rng(0)
    sd = {}
    for name, shape in shapes.items():
        if name.endswith("conv.weight"):
            fan_in = shape[1] * shape[2] * shape[3]
            sd[name] = (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        elif name.endswith("bn.weight"):
            sd[name] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        elif name.endswith("bn.running_var"):
            sd[name] = rng.uniform(0.5, 2.0, shape).astype(np.float32)
        else:
            sd[name] = (0.1 * rng.standard_normal(shape)).astype(np.float32)
    sd["fc.weight"] = np.zeros((1008, 2048), np.float32)
    sd["fc.bias"] = np.zeros((1008,), np.float32)
    sd["Conv2d_1a_3x3.bn.num_batches_tracked"] = np.array(0, np.int64)
    return sd


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory, state_dict):
    path = tmp_path_factory.mktemp("inception") / "inception_fid.npz"
    np.savez(path, **state_dict)
    return path


@pytest.fixture(scope="module")
def params(weights_file):
    return inc.load_inception_params(weights_file)


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(1)
    a = rng.uniform(-0.5, 0.5, (N_IMAGES, 8, 8, 1)).astype(np.float32)
    return a


@pytest.fixture(scope="module")
def features(params, images):
    return inc.inception_features(params, images)


def test_state_dict_names_and_shapes_match_the_reference_architecture(shapes):
    # 94 BasicConv2d layers (stem 5, 3 A x 7, B 4, 4 C x 10, D 6, 2 E x 9), 5 arrays each
    assert len(shapes) == 94 * 5
    known = {
        "Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3),
        "Conv2d_2b_3x3.conv.weight": (64, 32, 3, 3),
        "Conv2d_4a_3x3.bn.running_var": (192,),
        "Mixed_5b.branch5x5_1.conv.weight": (48, 192, 1, 1),
        "Mixed_5b.branch_pool.conv.weight": (32, 192, 1, 1),
        "Mixed_5d.branch3x3dbl_3.conv.weight": (96, 96, 3, 3),
        "Mixed_6a.branch3x3.conv.weight": (384, 288, 3, 3),
        "Mixed_6b.branch7x7_2.conv.weight": (128, 128, 1, 7),
        "Mixed_6e.branch7x7dbl_4.conv.weight": (192, 192, 7, 1),
        "Mixed_7a.branch3x3_2.conv.weight": (320, 192, 3, 3),
        "Mixed_7b.branch1x1.conv.weight": (320, 1280, 1, 1),
        "Mixed_7b.branch3x3_2b.conv.weight": (384, 384, 3, 1),
        "Mixed_7c.branch3x3dbl_1.conv.weight": (448, 2048, 1, 1),
        "Mixed_7c.branch_pool.conv.weight": (192, 2048, 1, 1),
        "Mixed_7c.branch_pool.bn.running_mean": (192,),
    }
    for name, shape in known.items():
        assert shapes[name] == shape, name
    # trainable weights: torchvision's Inception-v3 has 27,161,264, minus fc (2048·1000 + 1000)
    # and AuxLogits (conv0 98,304 + 256, conv1 2,457,600 + 1,536, fc 768·1000 + 1000)
    n_trainable = sum(int(np.prod(s)) for k, s in shapes.items() if not k.endswith(("running_mean", "running_var")))
    assert n_trainable == 27_161_264 - 2_049_000 - (98_304 + 256 + 2_457_600 + 1_536 + 769_000)


def test_loader_round_trip(params, state_dict, shapes):
    # every array comes back, transposed OIHW -> HWIO, by an inverse written independently here
    for path, leaf in _leaves(params):
        name = ".".join(path[:-1]) + "." + _SUFFIX[path[-1]]
        back = np.transpose(np.asarray(leaf), (3, 2, 0, 1)) if path[-1] == "kernel" else np.asarray(leaf)
        np.testing.assert_array_equal(back, state_dict[name], err_msg=name)
    assert len(list(_leaves(params))) == len(shapes)
    # one element by hand: PyTorch weight[o, i, kh, kw] == Flax kernel[kh, kw, i, o] for a (1, 7) conv
    w = state_dict["Mixed_6b.branch7x7_2.conv.weight"]
    k = np.asarray(params["Mixed_6b"]["branch7x7_2"]["kernel"])
    assert k.shape == (1, 7, 128, 128)
    assert k[0, 5, 17, 101] == w[101, 17, 0, 5]


def _torch_conv_bn_relu(x_nchw, w, gamma, beta, mean, var, stride, pad):
    """Direct PyTorch semantics in numpy: cross-correlation (OIHW), eval BN (eps 1e-3), ReLU."""
    n, c, h, wd = x_nchw.shape
    o, _, kh, kw = w.shape
    xp = np.pad(x_nchw, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    ho = (h + 2 * pad[0] - kh) // stride + 1
    wo = (wd + 2 * pad[1] - kw) // stride + 1
    y = np.zeros((n, o, ho, wo))
    for i in range(ho):
        for j in range(wo):
            patch = xp[:, :, i * stride : i * stride + kh, j * stride : j * stride + kw]
            y[:, :, i, j] = np.einsum("nchw,ochw->no", patch, w)
    bn = (y - mean[None, :, None, None]) / np.sqrt(var[None, :, None, None] + 1e-3)
    bn = bn * gamma[None, :, None, None] + beta[None, :, None, None]
    return np.maximum(bn, 0.0)


@pytest.mark.parametrize(
    "name, kernel, stride, pad, hw",
    [
        ("Conv2d_1a_3x3", (3, 3), 2, (0, 0), (9, 8)),
        ("Mixed_6b.branch7x7_2", (1, 7), 1, (0, 3), (5, 6)),
        ("Mixed_7b.branch3x3_2b", (3, 1), 1, (1, 0), (4, 3)),
    ],
)
def test_conv_bn_block_matches_numpy_reference(params, state_dict, name, kernel, stride, pad, hw):
    w = state_dict[f"{name}.conv.weight"].astype(np.float64)
    sub = params
    for part in name.split("."):
        sub = sub[part]
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, w.shape[1]) + hw)
    want = _torch_conv_bn_relu(
        x, w, *(state_dict[f"{name}.bn.{k}"].astype(np.float64) for k in ("weight", "bias", "running_mean", "running_var")),
        stride, pad,
    )
    block = inc.ConvBN(w.shape[0], kernel, strides=stride, padding=pad)
    got = block.apply({"params": sub}, jnp.asarray(np.transpose(x, (0, 2, 3, 1)), jnp.float32))
    np.testing.assert_allclose(np.transpose(np.asarray(got), (0, 3, 1, 2)), want, rtol=2e-4, atol=2e-4)


def _torch_bilinear(x, out_h, out_w):
    """Bilinear resize with PyTorch's align_corners=False rule (source index clamped at 0)."""

    def axis_weights(n_in, n_out):
        src = np.maximum((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0.0)
        i0 = np.floor(src).astype(int)
        i1 = np.minimum(i0 + 1, n_in - 1)
        lam = src - i0
        m = np.zeros((n_out, n_in))
        np.add.at(m, (np.arange(n_out), i0), 1 - lam)
        np.add.at(m, (np.arange(n_out), i1), lam)
        return m

    mh, mw = axis_weights(x.shape[1], out_h), axis_weights(x.shape[2], out_w)
    return np.einsum("ph,nhwc,qw->npqc", mh, x, mw)


def test_input_resize_gray_and_clip_match_pytorch_semantics():
    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, (2, 5, 7, 3)).astype(np.float32)
    got = np.asarray(inc._prepare(jnp.asarray(x)))
    assert got.shape == (2, 299, 299, 3)
    np.testing.assert_allclose(got, _torch_bilinear(x.astype(np.float64), 299, 299), atol=1e-5)
    gray = rng.uniform(-1, 1, (1, 6, 6, 1)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(inc._prepare(gray)), np.asarray(inc._prepare(np.repeat(gray, 3, -1))))
    np.testing.assert_array_equal(np.asarray(inc._prepare(3 * gray)), np.asarray(inc._prepare(np.clip(3 * gray, -1, 1))))


def test_pools_ignore_padding():
    x = -1.0 - jnp.arange(16.0).reshape(1, 4, 4, 1)  # all negative: zero padding would show
    avg = np.asarray(inc._avg_pool_no_pad(x))
    assert avg[0, 0, 0, 0] == pytest.approx(np.mean([-1, -2, -5, -6]))  # 4 real pixels, not 9
    assert avg[0, 1, 1, 0] == pytest.approx(np.mean(np.asarray(x)[0, :3, :3, 0]))
    # Mixed_7c's pool branch is a max pool (pytorch-fid's FIDInceptionE_2): compare the two E blocks
    e_avg, e_max = inc.BlockE(False), inc.BlockE(True)
    xe = jax.random.normal(jax.random.PRNGKey(0), (1, 3, 3, 8))
    p = jax.jit(e_avg.init)(jax.random.PRNGKey(1), xe)["params"]
    a, m = (np.asarray(jax.jit(e.apply)({"params": p}, xe)) for e in (e_avg, e_max))
    np.testing.assert_array_equal(a[..., :-192], m[..., :-192])  # only the pool branch differs
    assert not np.allclose(a[..., -192:], m[..., -192:])


@pytest.mark.parametrize("n, m, k", [(5, 7, 20), (3, 3, 50), (30, 40, 6)])
def test_fid_from_features_equals_the_covariance_formula(n, m, k):
    from adasym_jax.latent.frechet import frechet_from_features

    rng = np.random.default_rng(n * m)
    a = rng.standard_normal((n, k)) @ rng.standard_normal((k, k))
    b = 0.7 * rng.standard_normal((m, k)) @ rng.standard_normal((k, k)) + 0.3
    want = frechet_from_features(a, b)
    assert inc.fid_from_features(a, b) == pytest.approx(want, rel=1e-6)
    assert inc.fid_from_features(b, a) == pytest.approx(want, rel=1e-6)
    assert inc.fid_from_features(a, a) == pytest.approx(0.0, abs=1e-8 * np.sum(a**2))


def test_features_shape_finite_and_gray_equals_rgb(params, images, features):
    assert features.shape == (N_IMAGES, inc.FEATURE_DIM)
    assert np.all(np.isfinite(features)) and np.std(features) > 0
    rgb = inc.inception_features(params, np.repeat(images, 3, axis=-1))
    np.testing.assert_allclose(rgb, features, rtol=1e-5, atol=1e-6)
    # batching with a padded last batch gives the same features
    np.testing.assert_allclose(inc.inception_features(params, images[:3], batch_size=2), features[:3], rtol=1e-4, atol=1e-5)


def test_fid_zero_against_itself_positive_after_a_shift(params, images, features):
    scale = np.trace(np.cov(features, rowvar=False))
    assert inc.fid(params, images, images) < 1e-6 * scale
    shifted = inc.fid(params, images, images + 0.5)
    assert shifted > 1e-2 * scale
    metric = inc.InceptionFID(params, images)
    assert metric(images) < 1e-6 * scale
    assert metric(images + 0.5) == pytest.approx(shifted, rel=1e-6)


def test_loader_errors_name_the_problem(tmp_path, state_dict):
    with pytest.raises(ValueError, match="does not exist"):
        inc.load_inception_params(tmp_path / "nope.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="cannot read"):
        inc.load_inception_params(bad)
    sd = dict(state_dict)
    del sd["Mixed_6e.branch_pool.bn.running_var"]
    with pytest.raises(ValueError, match=r"missing key Mixed_6e\.branch_pool\.bn\.running_var"):
        inc.params_from_state_dict(sd)
    sd = dict(state_dict)
    sd["Mixed_5b.branch5x5_2.conv.weight"] = np.zeros((64, 48, 3, 3), np.float32)
    with pytest.raises(ValueError, match=r"Mixed_5b\.branch5x5_2\.conv\.weight has shape \(64, 48, 3, 3\), expected \(64, 48, 5, 5\)"):
        inc.params_from_state_dict(sd)
    sd = dict(state_dict)
    sd["fc.weight"] = np.zeros((1000, 2048), np.float32)  # torchvision's ImageNet head
    with pytest.raises(ValueError, match="torchvision"):
        inc.params_from_state_dict(sd)
    with pytest.raises(ValueError, match="C in"):
        inc.inception_features({}, np.zeros((2, 8, 8, 2), np.float32))


def _cli(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_rejects_bad_weights_before_training(tmp_path, capsys):
    f = tmp_path / "imgs.npy"
    np.save(f, np.zeros((20, 8, 8, 1), np.float32))
    code, _, err = _cli(
        ["latent", "--images", str(f), "--out", str(tmp_path / "run"), "--inception-weights", str(tmp_path / "w.npz")], capsys
    )
    assert code == 1 and "does not exist" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_cli_reports_fid(tmp_path, capsys, weights_file, params):
    rng = np.random.default_rng(0)
    f = tmp_path / "imgs.npy"
    np.save(f, rng.uniform(0, 255, (48, 8, 8, 1)).astype(np.uint8))
    out = tmp_path / "run"
    argv = [
        "latent", "--images", str(f), "--latent-dim", "3", "--method", "nf", "--seeds", "1",
        "--out", str(out), "--epochs", "2", "--ae-epochs", "1", "--ae-batch", "16", "--quiet",
        "--metric-samples", str(N_IMAGES), "--inception-weights", str(weights_file),
        "--set", "num_transforms=1", "--set", "num_bins=4", "--set", "flow_hidden=8", "--set", "ebm_blocks=0",
        "--set", "ebm_hidden=8", "--set", "num_zeta_samples=16", "--set", "batch_size=16", "--set", "eval_zeta_samples=64",
    ]
    code, stdout, err = _cli(argv, capsys)
    assert code == 0, err
    assert "fid: best" in stdout
    m = json.loads((out / "metrics.json").read_text())
    curve = np.asarray(m["evals"]["fid"]["curve"])
    assert curve.shape == (1, 2) and np.all(np.isfinite(curve)) and np.all(curve >= 0)
    assert m["evals"]["fid"]["best"][0] == pytest.approx(curve.min())
    assert m["fid_test_images"] is not None and m["fid_reconstructions"] is not None
