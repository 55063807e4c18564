"""``adasym latent``: the Section 5.3 pipeline (autoencoder -> flow/EBM on latents -> decoded
samples) on a user's image array or on scikit-learn's bundled 8×8 digits.

Registered by :mod:`adasym_jax.cli` through :func:`register`. Defaults come from
:func:`adasym_jax.presets.latent`: ``--preset celeba`` is the paper's (C.2 autoencoder, D.3
training) and the default for ``--images``; ``--preset digits`` (the default for
``--dataset digits``) is sized to finish in minutes on a laptop CPU. A user with 64×64 CelebA as
``celeba.npy`` (N, 64, 64, 3) runs the paper's setting with

    adasym latent --images celeba.npy --latent-dim 100 --method adasym --seeds 5 --out runs/celeba

Parsing and printing only; everything is a call into :mod:`adasym_jax.latent.run`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from adasym_jax.cli_args import add_overwrite_argument, add_set_argument, apply_overrides, parse_seeds, refuse_existing, stopping_fraction

from adasym_jax.presets import LATENT_DATASETS
from adasym_jax.presets import latent as latent_preset

DIGITS_LATENT = latent_preset("digits").run["latent_dim"]
_CELEBA = latent_preset("celeba").run


def register(subparsers) -> None:
    """Add the ``latent`` subcommand (handler: :func:`cmd_latent`)."""
    p = subparsers.add_parser(
        "latent",
        help="autoencoder-latent experiment (Section 5.3): train an AE, then the flow (+EBM) on its latents",
        description=__doc__.split("\n\n")[0],
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", help="image array .npy or .npz[:key], shape (N, H, W, C), 8..64 pixels; uint8 is scaled to [-1, 1]")
    src.add_argument("--dataset", choices=("digits",), help="scikit-learn's bundled 8x8 digits (reports the Fréchet digits distance)")
    p.add_argument(
        "--preset", choices=LATENT_DATASETS,
        help="settings (adasym_jax.presets.latent): celeba = the paper's D.3/C.2 (default with --images), "
        "digits = EBM 2x256, 1000 ζ samples, a 200-step warm start (default with --dataset digits)",
    )
    p.add_argument("--test-images", help="held-out images (default: a --test-fraction of --images)")
    p.add_argument("--test-fraction", type=float, default=0.1, help="held-out fraction of --images (default 0.1; digits: 0.2)")
    p.add_argument("--latent-dim", type=int, help=f"autoencoder latent size (default: the preset's; celeba {_CELEBA['latent_dim']} as in C.2, digits {DIGITS_LATENT})")
    p.add_argument("--method", choices=("adasym", "nf"), default="adasym", help="adasym (flow + EBM, the B.6 dual; default) or nf (the flow by maximum likelihood)")
    p.add_argument("--seeds", default="5", help="'5' = seeds 0-4; '2,7' = exactly those")
    p.add_argument("--out", required=True, help="run folder to create")
    add_overwrite_argument(p, "replace the contents of a non-empty --out")
    p.add_argument("--epochs", type=int, help=f"flow epochs (default: the preset's; D.3: {_CELEBA['epochs']})")
    p.add_argument("--eval-every", type=int, default=1, help="epochs between evaluations (default 1)")
    p.add_argument("--patience", type=int, help="train to convergence: stop a seed after this many evaluations without a lower validation NLL of p_θ and keep its best parameters; --epochs is then the cap (default off: a fixed number of epochs)")
    p.add_argument("--validation-fraction", type=float, help="share of the training images held out to validate with --patience (default 0.1)")
    p.add_argument("--ae-epochs", type=int, help=f"autoencoder epochs (default: the preset's; C.2: {_CELEBA['ae_epochs']})")
    p.add_argument("--ae-batch", type=int, help=f"autoencoder minibatch size (default: the preset's; C.2: {_CELEBA['ae_batch']})")
    p.add_argument("--ae-lr", type=float, help=f"autoencoder Adam learning rate (default: the preset's; C.2: {_CELEBA['ae_lr']:g})")
    p.add_argument("--no-warm-start", action="store_true", help="skip the B.8 warm start of the EBM")
    p.add_argument("--warm-start-steps", type=int, help="Adam steps of the B.8 warm start, regressing log q̃_ψ onto log p_θ (default: the preset's; celeba 1000, digits 200)")
    p.add_argument("--warm-start-samples", type=int, help="flow samples the warm start regresses on (default: the preset's; celeba 1000, digits 256)")
    p.add_argument("--warm-start-lr", type=float, help="Adam learning rate of the warm start (default: the preset's, 1e-3)")
    p.add_argument("--no-temperature", action="store_true", help="T = 1 instead of D.3's 0.01")
    p.add_argument("--zeta-every", type=int, help=f"refresh the ζ samples every K steps (default: the preset's; D.3: {_CELEBA['zeta_every']}; 1 = fresh every step)")
    p.add_argument("--pixel-space", action="store_true", help="digits only: train on the 64 dequantized pixels, no autoencoder")
    p.add_argument("--metric-samples", type=int, default=1000, help="samples per seed for the Fréchet digits distance (and FID)")
    p.add_argument(
        "--inception-weights", metavar="PATH.npz",
        help="FID Inception-v3 weights as .npz of pytorch-fid's state dict (see adasym_jax.latent.inception): "
        "also report the real FID of decoded samples vs --metric-samples training images",
    )
    add_set_argument(p, "overrides", "TrainConfig overrides on top of the preset, one or more per flag, repeatable")
    p.add_argument("--quiet", action="store_true", help="no progress messages on stderr (results are still printed)")
    p.set_defaults(func=cmd_latent)


_PRESET_ARGS = ("epochs", "latent_dim", "ae_epochs", "ae_batch", "ae_lr", "warm_start_steps", "warm_start_samples", "warm_start_lr", "zeta_every")


def _preset(args):
    """The :func:`adasym_jax.presets.latent` preset of ``args`` (``--preset``, else by the data
    source), with every unset run argument (``None``) filled from it in ``args``."""
    name = args.preset or ("digits" if args.dataset == "digits" else "celeba")
    preset = latent_preset(name)
    for key in _PRESET_ARGS:
        if getattr(args, key, None) is None:
            setattr(args, key, preset.run[key])
    return preset


def _config(args):
    config = _preset(args).config.replace(method=args.method)
    if args.no_temperature:
        config = config.replace(temperature=1.0)
    config = apply_overrides(config, args.overrides)
    if config.method != args.method:
        raise ValueError("set the method with --method, not --set")
    return config


def _split(images: np.ndarray, fraction: float, seed: int = 0):
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"--test-fraction must be in (0, 1), got {fraction}")
    n_test = int(round(fraction * len(images)))
    if n_test < 2 or len(images) - n_test < 2:
        raise ValueError(f"{len(images)} images are too few to hold out {fraction:.0%} for testing")
    order = np.random.default_rng(seed).permutation(len(images))
    return images[order[n_test:]], images[order[:n_test]]


def cmd_latent(args: argparse.Namespace) -> int:
    from adasym_jax.latent.autoencoder import check_images, check_latent_dim
    from adasym_jax.latent.run import AutoencoderSettings, Recipe, load_image_file

    seeds = parse_seeds(args.seeds)
    config = _config(args)
    fraction = stopping_fraction(args.validation_fraction, args.patience)
    for name in ("epochs", "eval_every", "ae_epochs", "ae_batch", "zeta_every", "metric_samples"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    recipe = Recipe(
        warm_start=not args.no_warm_start,
        warm_start_steps=args.warm_start_steps,
        warm_start_samples=args.warm_start_samples,
        warm_start_lr=args.warm_start_lr,
        zeta_every=args.zeta_every,
    )
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} exists and is not a folder")
    refuse_existing(out, args.overwrite, present=out.is_dir() and any(out.iterdir()), state="already exists and is not empty")
    say = None if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    inception = None
    if args.inception_weights:
        from adasym_jax.latent.inception import load_inception_params

        if args.metric_samples < 2:
            raise ValueError("FID needs --metric-samples >= 2")
        inception = load_inception_params(args.inception_weights)  # ValueError before any training
    metric, metric_name, invert = None, "frechet", False
    if args.dataset == "digits":
        from adasym_jax.latent.digits import load_digits_split, to_unit
        from adasym_jax.latent.frechet import FrechetDigits, train_digits_classifier

        split = load_digits_split(test_fraction=0.2)
        train, test = to_unit(split.train_pixels), to_unit(split.test_pixels)
        latent_dim = args.latent_dim  # the preset's unless given
        net = train_digits_classifier(train, split.train_labels, test, split.test_labels)
        metric, metric_name, invert = FrechetDigits(net, train), "frechet_digits_distance", True
        if say:
            say(f"digits classifier for the Fréchet digits distance: held-out accuracy {net.test_accuracy:.3f}")
    else:
        if args.pixel_space:
            raise ValueError("--pixel-space is for --dataset digits")
        images = load_image_file(args.images)
        if args.test_images:
            train, test = images, load_image_file(args.test_images)
        else:
            train, test = _split(images, args.test_fraction)
        latent_dim = args.latent_dim  # the preset's unless given
    check_images(train, "training images")
    if not args.pixel_space:
        check_latent_dim(latent_dim, train.shape[1:])
    extra_metrics = {}
    if inception is not None:
        from adasym_jax.latent.inception import InceptionFID

        ref = train[np.random.default_rng(1).permutation(len(train))[: args.metric_samples]]
        extra_metrics["fid"] = InceptionFID(inception, ref)
        if say:
            say(f"FID: reference statistics from {len(ref)} training images")
    if args.pixel_space:
        from adasym_jax.latent.run import run_pixels

        metrics = run_pixels(
            split.train_pixels, split.test_pixels, out, config=config, recipe=recipe, seeds=seeds, epochs=args.epochs,
            eval_every_epochs=args.eval_every, image_metric=metric, metric_name=metric_name,
            num_metric_samples=args.metric_samples, progress=say, extra_image_metrics=extra_metrics,
            validation_fraction=fraction, patience=args.patience,
        )
    else:
        from adasym_jax.latent.run import run_images

        ae = AutoencoderSettings(latent_dim=latent_dim, epochs=args.ae_epochs, batch_size=args.ae_batch, lr=args.ae_lr)
        metrics = run_images(
            train, test, out, config=config, recipe=recipe, autoencoder=ae, seeds=seeds, epochs=args.epochs,
            eval_every_epochs=args.eval_every, image_metric=metric, metric_name=metric_name,
            num_metric_samples=args.metric_samples, invert_grids=invert, progress=say,
            extra_image_metrics=extra_metrics, validation_fraction=fraction, patience=args.patience,
        )
    ev = metrics["evals"]
    from adasym_jax.latent.run import finite_mean as nanmean

    print(f"{args.method}: latent test NLL best {nanmean(ev['test_nll_p']['best']):.3f}, last {nanmean(ev['test_nll_p']['last']):.3f} (mean over {len(seeds)} seeds)")
    if metric_name in ev:
        print(f"{metric_name}: best {nanmean(ev[metric_name]['best']):.3f}, last {nanmean(ev[metric_name]['last']):.3f}")
    if "fid" in ev:
        print(f"fid: best {nanmean(ev['fid']['best']):.3f}, last {nanmean(ev['fid']['last']):.3f}")
    if "early_stopping" in metrics:
        es = metrics["early_stopping"]
        print(f"early stopping (patience {args.patience} evaluations): seeds stopped at epochs {', '.join(map(str, es['stopped_epoch']))} "
              f"(cap {args.epochs}), best at {', '.join(map(str, es['best_epoch']))}; the run keeps each seed's best-validation parameters")
    print(f"wrote {out}")
    if any(metrics["diverged"]):
        hint = "" if args.method == "nf" else " (a longer --warm-start-steps or --no-temperature may help)"
        print(f"warning: {sum(metrics['diverged'])} seed(s) diverged (NaN/inf); their values are NaN{hint}", file=sys.stderr)
        if all(metrics["diverged"]):
            return 3  # the adasym command's code for a diverged run
    return 0
