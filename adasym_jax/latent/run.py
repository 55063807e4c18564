"""The Section 5.3 experiment end to end: autoencoder -> latents -> flow (+ EBM) -> samples.

:func:`train_on_latents` trains ``config.method`` (``adasym`` or ``nf``) on any ``(n, d)``
array with the B.8 recipe (:class:`Recipe`: warm start, periodic ζ; the temperature is
``TrainConfig.temperature``), evaluating every epoch. :func:`run_images` runs the whole
pipeline on an image array and writes a run folder; :func:`run_pixels` trains directly on
flattened, dequantized pixels (no autoencoder). Defaults are Appendix C.2 / D.3
(:data:`PAPER_CONFIG`, :class:`AutoencoderSettings`).
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import jax
import numpy as np
from flax import serialization

from adasym_jax.checkpoint import Standardization, save_checkpoint
from adasym_jax.config import TrainConfig
from adasym_jax.latent.autoencoder import (
    AutoencoderFit,
    check_images,
    check_latent_dim,
    decode,
    encode,
    reconstruct,
    train_autoencoder,
)
from adasym_jax.latent.grid import save_grids
from adasym_jax.latent.warmstart import WarmStartSettings, warm_start_ebm
from adasym_jax.presets import latent as latent_preset
from adasym_jax.files import write_json
from adasym_jax.runner import FitResult, Trainer, fit, seed_list, steps_per_epoch, validation_split
from adasym_jax.validation import check_points

#: Appendix D.3 for CelebA, :func:`adasym_jax.presets.latent` ``("celeba")``: NSF 6 transforms ×
#: 16 bins; EBM 5 blocks × 1024; T = 0.01; ζ from 5000 samples (refreshed every 100 steps,
#: :class:`Recipe`); batch 128; LR θ 1e-3, ψ 1e-6, λ 1e-6, λ_ζ 1e-4; ε_ζ = 100; 40 epochs.
#: ``presets.latent("digits")`` is the same recipe sized for 8×8 digits on a CPU.
PAPER_CONFIG = latent_preset("celeba").config
PAPER_EPOCHS = latent_preset("celeba").run["epochs"]


@dataclasses.dataclass(frozen=True)
class Recipe:
    """The B.8 / D.3 switches besides the temperature (which is ``TrainConfig.temperature``).

    ``warm_start``: regress log q̃_ψ onto log p_θ first (:mod:`.warmstart`) for
    ``warm_start_steps`` Adam steps at ``warm_start_lr`` on ``warm_start_samples`` samples.
    ``zeta_every``: refresh the ``config.num_zeta_samples`` ζ samples every K steps
    (``TrainConfig.zeta_refresh_every``, :mod:`adasym_jax.zeta_sources`); ``1`` draws fresh
    samples every step (the switch off).
    """

    warm_start: bool = True
    warm_start_steps: int = 1000
    warm_start_samples: int = 1000
    warm_start_lr: float = 1e-3
    zeta_every: int = 100

    def __post_init__(self):
        if self.zeta_every < 1:
            raise ValueError(f"zeta_every must be >= 1, got {self.zeta_every}")
        if self.warm_start and (self.warm_start_steps < 1 or self.warm_start_samples < 1 or self.warm_start_lr <= 0):
            raise ValueError("warm start needs warm_start_steps, warm_start_samples >= 1 and warm_start_lr > 0")


@dataclasses.dataclass(frozen=True)
class AutoencoderSettings:
    """Appendix C.2: latent 100, 20 epochs, batch 128, Adam LR 1e-3, MSE."""

    latent_dim: int = 100
    epochs: int = 20
    batch_size: int = 128
    lr: float = 1e-3
    mlp_hidden: int = 256
    seed: int = 0


@dataclasses.dataclass
class LatentRun:
    """Result of :func:`train_on_latents`. ``evals[name]`` is ``(num_seeds, n_evals)`` at
    ``eval_epochs``; ``warm_start_loss`` ``(num_seeds, steps)`` (empty without warm start);
    ``diverged`` ``(num_seeds,)`` is True where a training metric became NaN/inf. Trained to
    convergence (``patience``): ``val_curve`` ``(num_seeds, n_evals)`` is the validation NLL of
    p_θ, ``best_epoch`` / ``stopped_epoch`` ``(num_seeds,)`` each seed's best evaluation and where it
    stopped (``epochs`` for a seed that reached the cap), and ``state`` holds each seed's best-validation parameters."""

    trainer: Trainer
    state: Any
    seeds: list[int]
    eval_epochs: list[int]
    evals: dict[str, np.ndarray]
    warm_start_loss: np.ndarray
    diverged: np.ndarray
    steps: int
    train_seconds: float
    steps_per_second: float
    val_curve: Optional[np.ndarray] = None
    best_epoch: Optional[np.ndarray] = None
    stopped_epoch: Optional[np.ndarray] = None


def train_on_latents(
    x_train: np.ndarray,
    x_test: np.ndarray,
    *,
    config: TrainConfig = PAPER_CONFIG,
    recipe: Recipe = Recipe(),
    seeds: int | Sequence[int] = 5,
    epochs: int = PAPER_EPOCHS,
    eval_every_epochs: int = 1,
    sample_metric: Optional[Callable[[np.ndarray], float]] = None,
    num_metric_samples: int = 1000,
    progress: Optional[Callable[[str], None]] = None,
    extra_sample_metrics: Optional[Mapping[str, Callable[[np.ndarray], float]]] = None,
    validation_fraction: float = 0.0,
    patience: Optional[int] = None,
) -> LatentRun:
    """Train every seed at once on ``x_train (n, d)``; evaluate after every ``eval_every_epochs``,
    through :func:`adasym_jax.runner.fit` (the library's one training loop).

    An epoch is ``n // batch_size`` steps (one step for full batch). The recipe's ζ cache is
    ``TrainConfig.zeta_refresh_every`` = ``recipe.zeta_every`` (D.3: M samples redrawn every
    K steps). Each evaluation records the test NLL of p_θ and q̃_ψ on ``x_test`` and log ζ̂
    (``Trainer.evaluate``) and, if given, ``sample_metric`` of ``num_metric_samples`` flow
    samples ``(num, d)`` per seed (e.g. a Fréchet distance of decoded images).
    ``extra_sample_metrics`` ``{name: fn}`` are evaluated on the same samples and recorded under
    ``name`` (e.g. ``{"fid": ...}``). A seed that diverges stops at its last good state
    (``fit(on_nonfinite="freeze")``) and its later values are NaN; the others go on.
    ``progress`` receives one line per phase and evaluation, and enables the progress bar.

    To convergence (:func:`~adasym_jax.runner.fit`'s rule): ``validation_fraction`` of the rows
    of ``x_train`` are held out (:func:`~adasym_jax.runner.validation_split`) and the exact NLL
    of p_θ on them is evaluated with the rest; with ``patience`` a seed stops after that many
    evaluations without a lower one and keeps its best parameters, ``epochs`` being the cap.
    """
    if config.method not in ("adasym", "nf"):
        raise ValueError(f"method must be adasym or nf, got {config.method!r}")
    check_points(x_train, None, "training latents", min_rows=2)
    check_points(x_test, x_train.shape[1], "test latents", min_rows=1)
    if epochs < 1 or eval_every_epochs < 1:
        raise ValueError("epochs and eval_every_epochs must be >= 1")
    if validation_fraction and patience is None:
        raise ValueError("validation_fraction holds rows out for early stopping: give patience too")
    seeds_ = seed_list(seeds)
    metric_fns = {} if sample_metric is None else {"sample_metric": sample_metric}
    for name, fn in (extra_sample_metrics or {}).items():
        if name in metric_fns or name.startswith(("test_", "log_zeta")) or not callable(fn):
            raise ValueError(f"extra sample metric {name!r} must be a callable with a new name")
        metric_fns[name] = fn
    n, dim = x_train.shape
    if config.zeta_refresh_every not in (1, recipe.zeta_every):
        raise ValueError(
            f"a latent run's ζ refresh period is Recipe.zeta_every (--zeta-every, {recipe.zeta_every}); "
            f"got config.zeta_refresh_every={config.zeta_refresh_every} too"
        )
    config = config.replace(zeta_refresh_every=recipe.zeta_every)
    per_epoch = steps_per_epoch(config, len(validation_split(n, validation_fraction)[0]))
    trainer = Trainer(config, dim)
    flow, ebm = trainer.flow, trainer.ebm
    state = trainer.init(seeds_)
    ws_loss = np.zeros((len(seeds_), 0), np.float32)
    if recipe.warm_start and config.method == "adasym":
        ws = WarmStartSettings(recipe.warm_start_steps, recipe.warm_start_samples, recipe.warm_start_lr)
        _say(progress, f"warm start: {ws.steps} Adam steps regressing log q̃_ψ onto log p_θ ...")
        state, losses = jax.jit(jax.vmap(lambda s: warm_start_ebm(flow, ebm, s, ws)))(state)
        ws_loss = np.asarray(losses)
        _say(progress, f"warm start: regression loss {np.mean(ws_loss[:, 0]):.3g} -> {np.mean(ws_loss[:, -1]):.3g} nats^2")
    keys = {"key": jax.random.PRNGKey(2024)}

    def sample_metrics(s, _standardization) -> dict[str, np.ndarray]:
        keys["key"], k = jax.random.split(keys["key"])
        samples = np.asarray(trainer.sample(s, k, num_metric_samples))
        return {name: np.array([fn(x) if np.all(np.isfinite(x)) else np.nan for x in samples]) for name, fn in metric_fns.items()}

    def report(r: FitResult) -> None:
        epoch = r.eval_steps[-1] // per_epoch
        msg = f"epoch {epoch}/{epochs}: test NLL p {finite_mean(r.evals['test_nll_p'][:, -1]):.3f}"
        if r.val_curve is not None:
            msg += f", validation NLL p {finite_mean(r.val_curve[:, -1]):.3f}"
        for name in metric_fns:
            msg += f", {'sample metric' if name == 'sample_metric' else name} {finite_mean(r.evals[name][:, -1]):.3f}"
        _say(progress, msg)

    fitted = fit(
        x_train, test_data=x_test, config=config, seeds=seeds_, num_steps=epochs * per_epoch,
        eval_every=eval_every_epochs * per_epoch, state=state, trainer=trainer, standardize=False,
        progress=progress is not None, on_eval=report if progress is not None else None,
        evaluators=[sample_metrics] if metric_fns else [], on_nonfinite="freeze",
        validation_fraction=validation_fraction, patience=patience,
    )
    steps = fitted.eval_steps[-1]
    early = {}
    if patience is not None:
        early = {
            "best_epoch": np.asarray(fitted.best_step) // per_epoch,
            "stopped_epoch": np.asarray(fitted.stopped_step) // per_epoch,
        }
    return LatentRun(
        trainer=trainer,
        state=fitted.state,
        seeds=seeds_,
        eval_epochs=[s // per_epoch for s in fitted.eval_steps],
        evals={k: np.asarray(v, np.float64) for k, v in fitted.evals.items()},
        warm_start_loss=ws_loss,
        diverged=fitted.diverged_step >= 0,
        steps=steps,
        train_seconds=steps / fitted.steps_per_second if fitted.steps_per_second > 0 else float("nan"),
        steps_per_second=fitted.steps_per_second,
        val_curve=None if fitted.val_curve is None else np.asarray(fitted.val_curve, np.float64),
        **early,
    )


def finite_mean(v) -> float:
    """Mean of the finite entries of ``v`` (NaN if there are none), without warnings."""
    v = np.asarray(v, np.float64)
    return float(np.mean(v[np.isfinite(v)])) if np.any(np.isfinite(v)) else float("nan")


def _say(progress, msg: str) -> None:
    if progress is not None:
        progress(msg)


def summarize(run: LatentRun, name: str = "sample_metric") -> dict[str, Any]:
    """Per-seed best and last of every evaluated quantity (best = min over evaluations); for a
    run to convergence also ``at_best_val``, the value at each seed's best-validation evaluation
    (the parameters the run keeps; NaN where that was before the first evaluation)."""
    out: dict[str, Any] = {}
    at = None
    if run.best_epoch is not None:
        at = [run.eval_epochs.index(e) if e in run.eval_epochs else None for e in np.asarray(run.best_epoch).tolist()]
    for k, v in run.evals.items():
        with np.errstate(all="ignore"):
            best = np.array([np.nanmin(r) if np.any(np.isfinite(r)) else np.nan for r in v])
        out[k] = {"best": best.tolist(), "last": v[:, -1].tolist(), "curve": v.tolist()}
        if at is not None:
            out[k]["at_best_val"] = [float(v[s, j]) if j is not None else float("nan") for s, j in enumerate(at)]
    return out


def load_image_file(path: str | os.PathLike) -> np.ndarray:
    """Images ``(N, H, W, C)`` from ``.npy`` or ``.npz[:key]`` (first array without a key).

    ``uint8`` pixels are scaled to [-1, 1] as in C.2; float arrays are used as given (scale them
    to about [-1, 1]). Validation of rank, size and finiteness is :func:`check_images`.
    """
    spec = str(path)
    key = None
    if ".npz:" in spec:
        spec, key = spec.split(".npz:", 1)
        spec += ".npz"
    p = Path(spec)
    if not p.is_file():
        raise ValueError(f"image file {spec} does not exist")
    if p.suffix == ".npy":
        arr = np.load(p, allow_pickle=False)
    elif p.suffix == ".npz":
        with np.load(p, allow_pickle=False) as z:
            if key is None:
                if not z.files:
                    raise ValueError(f"{spec} holds no arrays")
                key = z.files[0]
            if key not in z.files:
                raise ValueError(f"{spec} has no array {key!r}; it has {', '.join(z.files)}")
            arr = z[key]
    else:
        raise ValueError(f"image file must be .npy or .npz, got {p.name}")
    if arr.dtype == np.uint8:
        arr = arr.astype(np.float32) / 255.0 * 2.0 - 1.0
    elif np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float32)
    else:
        raise ValueError(f"images must be uint8 or float, got dtype {arr.dtype}")
    check_images(arr)
    return arr


def _finite_or_none(x):
    return None if x is None or not np.isfinite(x) else float(x)


def run_images(
    train_images: np.ndarray,
    test_images: np.ndarray,
    out_dir: str | os.PathLike,
    *,
    config: TrainConfig = PAPER_CONFIG,
    recipe: Recipe = Recipe(),
    autoencoder: AutoencoderSettings = AutoencoderSettings(),
    seeds: int | Sequence[int] = 5,
    epochs: int = PAPER_EPOCHS,
    eval_every_epochs: int = 1,
    image_metric: Optional[Callable[[np.ndarray], float]] = None,
    metric_name: str = "frechet",
    num_metric_samples: int = 1000,
    invert_grids: bool = False,
    progress: Optional[Callable[[str], None]] = None,
    autoencoder_fit: Optional[AutoencoderFit] = None,
    extra_image_metrics: Optional[Mapping[str, Callable[[np.ndarray], float]]] = None,
    validation_fraction: float = 0.0,
    patience: Optional[int] = None,
) -> dict[str, Any]:
    """Autoencoder (C.2) on ``train_images``, then the flow (+ EBM) on standardized latents.

    Writes to ``out_dir``: ``config.json``, ``metrics.json``, the flow/EBM checkpoint
    (``state.msgpack`` + ``checkpoint.json``; the latent :class:`~adasym_jax.checkpoint.Standardization`
    in its ``extra``, so ``adasym sample --run`` returns latents in autoencoder units), the
    autoencoder (``autoencoder.msgpack`` + ``autoencoder.json``), ``samples.png`` (decoded
    samples of the first seed after training) and ``reconstructions.png``. Latent test NLLs
    are in standardized latent units. ``image_metric`` maps images ``(n, H, W, C)`` to a float
    (e.g. :class:`~adasym_jax.latent.frechet.FrechetDigits`); it is evaluated every epoch on
    decoded samples and reported best-over-training and last. ``extra_image_metrics``
    ``{name: fn}`` (e.g. ``{"fid": InceptionFID(...)}``) are evaluated the same way and stored
    under ``name``, plus ``{name}_reconstructions`` and ``{name}_test_images``.
    ``validation_fraction`` and ``patience`` train to convergence as :func:`train_on_latents`
    (the latents' standardization is then fitted on the training rows only; the autoencoder,
    shared by every run, still trains on all of ``train_images``). Returns the
    metrics dict.
    """
    check_images(train_images, "training images")
    check_images(test_images, "test images")
    if test_images.shape[1:] != train_images.shape[1:]:
        raise ValueError(f"test images are {test_images.shape[1:]}, training images {train_images.shape[1:]}")
    check_latent_dim(autoencoder.latent_dim, train_images.shape[1:])
    if validation_fraction and patience is None:
        raise ValueError("validation_fraction holds rows out for early stopping: give patience too")
    train_rows = validation_split(len(train_images), validation_fraction)[0]  # a bad split fails before the autoencoder trains
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if autoencoder_fit is not None:
        ae = autoencoder_fit
        if ae.model.latent_dim != autoencoder.latent_dim or tuple(ae.model.image_shape) != tuple(train_images.shape[1:]):
            raise ValueError("autoencoder_fit does not match the latent size or image shape")
    else:
        ae = fit_autoencoder(train_images, test_images, autoencoder, progress)
    z_train = encode(ae.model, ae.params, train_images)
    z_test = encode(ae.model, ae.params, test_images)
    scaler = Standardization.fit(z_train[train_rows])

    def to_images(latents_std: np.ndarray) -> np.ndarray:
        return decode(ae.model, ae.params, _f32(scaler.invert(latents_std)))

    metric = None if image_metric is None else (lambda s: image_metric(to_images(s)))
    extras = {k: _decoded(fn, to_images) for k, fn in (extra_image_metrics or {}).items()}
    run = train_on_latents(
        _f32(scaler.apply(z_train)),
        _f32(scaler.apply(z_test)),
        config=config,
        recipe=recipe,
        seeds=seeds,
        epochs=epochs,
        eval_every_epochs=eval_every_epochs,
        sample_metric=metric,
        num_metric_samples=num_metric_samples,
        progress=progress,
        extra_sample_metrics=extras,
        validation_fraction=validation_fraction,
        patience=patience,
    )
    config = run.trainer.config  # with the recipe's ζ refresh period, which the saved state needs
    recon = reconstruct(ae.model, ae.params, test_images[:num_metric_samples])
    extra = {
        "autoencoder_test_mse": ae.test_mse,
        "autoencoder_train_mse": ae.train_mse.tolist(),
        "reconstruction_metric": None if image_metric is None else _finite_or_none(image_metric(recon)),
        "test_images_metric": None if image_metric is None else _finite_or_none(image_metric(test_images[:num_metric_samples])),
    }
    for name, fn in (extra_image_metrics or {}).items():
        extra[f"{name}_reconstructions"] = _finite_or_none(fn(recon))
        extra[f"{name}_test_images"] = _finite_or_none(fn(test_images[:num_metric_samples]))
    settings = {"autoencoder": dataclasses.asdict(autoencoder), **_early_settings(validation_fraction, patience)}
    metrics = _write_run(out, run, config, recipe, metric_name, extra, settings)
    state_bytes = serialization.msgpack_serialize(serialization.to_state_dict(jax.device_get(ae.params)))
    (out / "autoencoder.msgpack").write_bytes(state_bytes)
    write_json(
        out / "autoencoder.json",
        {"image_shape": list(train_images.shape[1:]), **dataclasses.asdict(autoencoder), "latent_mean": scaler.mean, "latent_std": scaler.std},
    )
    save_checkpoint(out, run.state, config, run.trainer.dim, run.seeds, extra=_latent_extra("autoencoder", scaler), standardization=scaler)
    samples = np.asarray(run.trainer.sample(run.state, jax.random.PRNGKey(7), 50))[0]
    if np.all(np.isfinite(samples)):
        save_grids(out / "samples.png", [to_images(samples)], [f"{config.method} samples (seed {run.seeds[0]})"], invert=invert_grids)
    save_grids(out / "reconstructions.png", [test_images[:50], recon[:50]], ["test images", "reconstructions"], invert=invert_grids)
    return metrics


def _early_settings(validation_fraction: float, patience: Optional[int]) -> dict[str, Any]:
    """The run-settings entry of a run to convergence (none for a fixed-length run)."""
    return {} if patience is None else {"early_stopping": {"validation_fraction": float(validation_fraction), "patience": int(patience)}}


def _f32(a) -> np.ndarray:
    return np.asarray(a, np.float32)


def _latent_extra(space: str, scaler: Standardization) -> dict[str, Any]:
    """The checkpoint ``extra`` of a latent run. The standardization itself is saved as
    ``extra["standardization"]`` (so ``adasym sample/evaluate`` work in latent/pixel units);
    ``latent_space`` names the space, and the pre-unification keys (``latent_mean``/``latent_std``
    or ``pixel_mean``/``pixel_std``, the same numbers) stay for readers that detect a latent
    run by them (``adasym_jax.cli.run_kind``)."""
    prefix = "latent" if space == "autoencoder" else "pixel"
    return {"latent_space": space, f"{prefix}_mean": scaler.mean.tolist(), f"{prefix}_std": scaler.std.tolist()}


def _decoded(fn: Callable[[np.ndarray], float], to_images: Callable[[np.ndarray], np.ndarray]):
    return lambda s: fn(to_images(s))


def fit_autoencoder(
    train_images: np.ndarray,
    test_images: np.ndarray,
    settings: AutoencoderSettings = AutoencoderSettings(),
    progress: Optional[Callable[[str], None]] = None,
) -> AutoencoderFit:
    """Train the C.2 autoencoder with ``settings`` (reported through ``progress``)."""
    _say(progress, f"autoencoder: {train_images.shape[1:]} -> {settings.latent_dim}-D, {settings.epochs} epochs")
    ae = train_autoencoder(
        train_images,
        settings.latent_dim,
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        lr=settings.lr,
        mlp_hidden=settings.mlp_hidden,
        seed=settings.seed,
        test_images=test_images,
    )
    _say(progress, f"autoencoder: train MSE {ae.train_mse[-1]:.4f}, test MSE {ae.test_mse:.4f} ({ae.seconds:.0f} s)")
    warning = autoencoder_warning(ae.test_mse, test_images)
    if warning:
        warnings.warn(warning, stacklevel=2)
        _say(progress, "warning: " + warning)
    return ae


#: An autoencoder whose test MSE is above this share of the mean-image MSE has not learned.
UNLEARNED_MSE_SHARE = 0.9


def autoencoder_warning(test_mse: float, test_images: np.ndarray) -> Optional[str]:
    """A one-line warning when the autoencoder reconstructs no better than the mean image
    (test MSE ≥ ``UNLEARNED_MSE_SHARE`` × that of predicting every pixel's mean), else ``None``."""
    x = np.asarray(test_images, np.float64).reshape(len(test_images), -1)
    baseline = float(np.mean((x - x.mean(axis=0)) ** 2))
    if baseline > 0 and test_mse >= UNLEARNED_MSE_SHARE * baseline:
        return (
            f"the autoencoder has not learned: test MSE {test_mse:.4g} vs {baseline:.4g} for the mean image "
            "(reconstructions are near-uniform); train it longer (--ae-epochs) before reading the latent results"
        )
    return None


def _write_run(out: Path, run: LatentRun, config, recipe, metric_name, extra, settings) -> dict[str, Any]:
    summary = summarize(run)
    if "sample_metric" in summary:
        summary[metric_name] = summary.pop("sample_metric")
    metrics = {
        "method": config.method,
        "seeds": run.seeds,
        "eval_epochs": run.eval_epochs,
        "steps": run.steps,
        "steps_per_second": run.steps_per_second,
        "diverged": run.diverged.tolist(),
        "warm_start_loss_first_last": (
            [run.warm_start_loss[:, 0].tolist(), run.warm_start_loss[:, -1].tolist()] if run.warm_start_loss.size else None
        ),
        "evals": summary,
        **extra,
    }
    if run.best_epoch is not None:
        metrics["early_stopping"] = {
            **settings.get("early_stopping", {}),
            "best_epoch": np.asarray(run.best_epoch).tolist(),
            "stopped_epoch": np.asarray(run.stopped_epoch).tolist(),
            "val_curve": np.asarray(run.val_curve).tolist(),
        }
    write_json(out / "metrics.json", metrics)
    # the layout of every run folder (adasym train, sbi, latent): {"config": TrainConfig, "run": settings}
    write_json(out / "config.json", {"config": config.to_dict(), "run": {"recipe": dataclasses.asdict(recipe), **settings}})
    return metrics


def run_pixels(
    train_pixels: np.ndarray,
    test_pixels: np.ndarray,
    out_dir: str | os.PathLike,
    *,
    config: TrainConfig,
    recipe: Recipe = Recipe(),
    seeds: int | Sequence[int] = 5,
    epochs: int = 20,
    eval_every_epochs: int = 1,
    image_metric: Optional[Callable[[np.ndarray], float]] = None,
    metric_name: str = "frechet",
    num_metric_samples: int = 1000,
    data_seed: int = 0,
    invert_grids: bool = True,
    progress: Optional[Callable[[str], None]] = None,
    extra_image_metrics: Optional[Mapping[str, Callable[[np.ndarray], float]]] = None,
    validation_fraction: float = 0.0,
    patience: Optional[int] = None,
) -> dict[str, Any]:
    """Digits directly in pixel space (8·8 = 64 dimensions, no autoencoder).

    Integer pixels ``(n, 8, 8, 1)`` are dequantized to (−1, 1) (:func:`.digits.dequantize`; the
    test set once with a fixed noise seed), then standardized per pixel. Test NLLs are reported
    in dequantized (−1, 1) units (``test_nll_p_unit``) and as bits per pixel of the 0..16 data.
    ``extra_image_metrics`` as in :func:`run_images` (evaluated on samples only);
    ``validation_fraction`` and ``patience`` as there.
    """
    from adasym_jax.latent.digits import dequantize, discrete_bits_per_dim

    shape = train_pixels.shape[1:]
    x_tr = dequantize(train_pixels, data_seed).reshape(len(train_pixels), -1)
    x_te = dequantize(test_pixels, data_seed + 1).reshape(len(test_pixels), -1)
    scaler = Standardization.fit(x_tr[validation_split(len(x_tr), validation_fraction)[0]])
    dim = x_tr.shape[1]

    def to_images(s: np.ndarray) -> np.ndarray:
        return _f32(scaler.invert(s)).reshape((-1,) + tuple(shape))

    metric = None if image_metric is None else (lambda s: image_metric(to_images(s)))
    extras = {k: _decoded(fn, to_images) for k, fn in (extra_image_metrics or {}).items()}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    run = train_on_latents(
        _f32(scaler.apply(x_tr)),
        _f32(scaler.apply(x_te)),
        config=config,
        recipe=recipe,
        seeds=seeds,
        epochs=epochs,
        eval_every_epochs=eval_every_epochs,
        sample_metric=metric,
        num_metric_samples=num_metric_samples,
        progress=progress,
        extra_sample_metrics=extras,
        validation_fraction=validation_fraction,
        patience=patience,
    )
    config = run.trainer.config  # with the recipe's ζ refresh period, which the saved state needs
    nll_unit = run.evals["test_nll_p"] + scaler.log_det  # data units: + Σ log std (Standardization.log_det)
    run.evals["test_nll_p_unit"] = nll_unit
    run.evals["test_bits_per_pixel"] = np.vectorize(lambda v: discrete_bits_per_dim(v, dim))(nll_unit)
    metrics = _write_run(out, run, config, recipe, metric_name, {}, {"pixel_space": True, "dim": dim, **_early_settings(validation_fraction, patience)})
    save_checkpoint(out, run.state, config, dim, run.seeds, extra=_latent_extra("pixels", scaler), standardization=scaler)
    samples = np.asarray(run.trainer.sample(run.state, jax.random.PRNGKey(7), 50))[0]
    if np.all(np.isfinite(samples)):
        save_grids(out / "samples.png", [to_images(samples)], [f"{config.method} pixel-space samples"], invert=invert_grids)
    return metrics


__all__ = [
    "PAPER_CONFIG",
    "PAPER_EPOCHS",
    "AutoencoderSettings",
    "LatentRun",
    "Recipe",
    "fit_autoencoder",
    "load_image_file",
    "run_images",
    "run_pixels",
    "summarize",
    "train_on_latents",
]
