"""Higher dimensions (Section 5.3, Appendices B.8, C.2, D.3): the autoencoder-latent experiment.

- :mod:`.autoencoder` — the convolutional autoencoder of Algorithms 7–8 (any 8×8 … 64×64 image).
- :mod:`.warmstart` — B.8 warm start: regress log q̃_ψ onto log p_θ on flow samples.
- ζ from a large sample refreshed every K steps (D.3) is ``TrainConfig.zeta_refresh_every``
  (:mod:`adasym_jax.zeta_sources`), driven by :func:`adasym_jax.runner.fit`.
- :mod:`.frechet` — Fréchet distance and the *Fréchet digits distance* (not FID).
- :mod:`.inception` — a real FID: the FID Inception-v3 in Flax, weights from a local ``.npz``.
- :mod:`.digits` — scikit-learn's bundled 8×8 digits.
- :mod:`.run` — the experiment end to end (``adasym latent`` on the command line).

The EBM temperature T and the temperature-weighted KL (22) are in the core
(``TrainConfig.temperature``).
"""

from adasym_jax.latent.autoencoder import (
    AutoencoderFit,
    ConvAutoencoder,
    LatentScaler,
    check_images,
    check_latent_dim,
    decode,
    encode,
    reconstruct,
    train_autoencoder,
)
from adasym_jax.latent.frechet import (
    DigitsFeatureNet,
    FrechetDigits,
    feature_stats,
    frechet_distance,
    frechet_from_features,
    train_digits_classifier,
)
from adasym_jax.latent.inception import (
    InceptionFID,
    InceptionV3FID,
    fid,
    fid_from_features,
    inception_features,
    load_inception_params,
)
from adasym_jax.latent.run import (
    PAPER_CONFIG,
    PAPER_EPOCHS,
    AutoencoderSettings,
    LatentRun,
    Recipe,
    load_image_file,
    run_images,
    run_pixels,
    train_on_latents,
)
from adasym_jax.latent.warmstart import WarmStartSettings, warm_start_ebm

__all__ = [
    "AutoencoderFit",
    "AutoencoderSettings",
    "ConvAutoencoder",
    "DigitsFeatureNet",
    "FrechetDigits",
    "InceptionFID",
    "InceptionV3FID",
    "LatentRun",
    "LatentScaler",
    "PAPER_CONFIG",
    "PAPER_EPOCHS",
    "Recipe",
    "WarmStartSettings",
    "check_images",
    "check_latent_dim",
    "decode",
    "encode",
    "fid",
    "fid_from_features",
    "feature_stats",
    "frechet_distance",
    "frechet_from_features",
    "inception_features",
    "load_image_file",
    "load_inception_params",
    "reconstruct",
    "run_images",
    "run_pixels",
    "train_autoencoder",
    "train_digits_classifier",
    "warm_start_ebm",
]
