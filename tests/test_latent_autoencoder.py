"""Autoencoder geometry, input checks and a short training run."""

import jax
import numpy as np
import pytest

from adasym_jax.latent.autoencoder import (
    ConvAutoencoder,
    LatentScaler,
    check_images,
    check_latent_dim,
    num_levels,
    train_autoencoder,
)


@pytest.mark.parametrize("shape", [(8, 8, 1), (32, 16, 3)])
def test_shapes_round_trip(shape):
    model = ConvAutoencoder(7, shape, mlp_hidden=16)
    x = np.zeros((2,) + shape, np.float32)
    params = model.init(jax.random.PRNGKey(0), x)
    assert model.apply(params, x, method="encode").shape == (2, 7)
    assert model.apply(params, x).shape == (2,) + shape


def test_levels_follow_algorithm_7():
    assert num_levels(64, 64) == 4  # the paper's four stride-2 convolutions, 64 -> 4
    assert num_levels(8, 8) == 2  # 8 -> 2
    # a 64x64 encoder ends in a 4x4x256 map, as in Algorithm 7
    model = ConvAutoencoder(5, (64, 64, 3), mlp_hidden=8)
    params = model.init(jax.random.PRNGKey(0), np.zeros((1, 64, 64, 3), np.float32))["params"]
    assert params["dec_mlp_1"]["kernel"].shape[1] == 4 * 4 * 256


@pytest.mark.parametrize(
    "images, match",
    [
        (np.zeros((5, 8, 8), np.float32), "rank 4"),
        (np.zeros((5, 4, 4, 1), np.float32), "between 8x8 and 64x64"),
        (np.zeros((5, 128, 128, 1), np.float32), "between 8x8 and 64x64"),
        (np.zeros((5, 8, 8, 1), np.int32), "float"),
        (np.full((5, 8, 8, 1), np.nan, np.float32), "NaN"),
        (np.zeros((5, 10, 8, 1), np.float32), "divisible"),
    ],
)
def test_bad_images_rejected(images, match):
    with pytest.raises(ValueError, match=match):
        check_images(images)


def test_latent_larger_than_input_rejected():
    with pytest.raises(ValueError, match="larger than the input"):
        check_latent_dim(65, (8, 8, 1))
    with pytest.raises(ValueError, match="larger than the input"):
        train_autoencoder(np.zeros((4, 8, 8, 1), np.float32), 100, epochs=1)
    check_latent_dim(64, (8, 8, 1))


def test_training_reduces_reconstruction_error():
    rng = np.random.default_rng(0)
    # images on a 3-D manifold: mixtures of three fixed patterns
    basis = rng.uniform(-1, 1, (3, 8, 8, 1)).astype(np.float32)
    coef = rng.normal(size=(256, 3)).astype(np.float32) * 0.5
    imgs = np.einsum("nk,khwc->nhwc", coef, basis)
    fit = train_autoencoder(imgs, 3, epochs=10, batch_size=64, mlp_hidden=32, test_images=imgs[:64])
    baseline = float(np.mean((imgs - imgs.mean(0)) ** 2))  # MSE of predicting the mean image
    assert fit.train_mse[-1] < 0.5 * fit.train_mse[0]
    assert fit.test_mse < 0.5 * baseline


def test_scaler_round_trip_and_log_det():
    z = np.random.default_rng(0).normal(3.0, [1.0, 2.0, 0.5], size=(500, 3)).astype(np.float32)
    sc = LatentScaler.fit(z)
    np.testing.assert_allclose(sc.invert(sc.apply(z)), z, atol=1e-5)
    # One standardization type (issue 11): LatentScaler is checkpoint.Standardization, whose
    # log_det is +Σ log std (log |dx/dz|; data-unit NLL = standardized NLL + log_det).
    from adasym_jax.checkpoint import Standardization

    assert LatentScaler is Standardization
    assert sc.log_det == pytest.approx(np.sum(np.log(z.std(0))), rel=1e-4)


def test_autoencoder_that_only_predicts_the_mean_image_is_flagged():
    from adasym_jax.latent.run import autoencoder_warning

    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, size=(50, 8, 8, 1))
    baseline = float(np.mean((images - images.mean(axis=0)) ** 2))
    assert "has not learned" in autoencoder_warning(baseline, images)  # the mean image's error
    assert autoencoder_warning(0.2 * baseline, images) is None  # a real reconstruction
