"""Spread of the reverse-KL part of ∇θ (eq. (18)) over repeated sample sets, per θ-weight
baseline (issue 15 item 3), on gmm40 (D.1) and two moons (D.4, conditional, B.6).

For each setting a state is trained for ``--steps`` steps (one seed), once with the old
defaults (plain ascent on λ, eq. (18) verbatim: ζ̂ drifts) and once with the new ones (Adam on
λ, the default baseline). At each state the reverse part of ∇θ (λ_fw = 0, λ_rv = 1) is computed
for ``--sets`` independent sample sets with every baseline (``none`` = the paper's weight,
``loo``, ``log_zeta``), and compared with the forward part's norm (λ_fw = 1, λ_rv = 0). The
spread is mean_r ‖g_r − ḡ‖; ``bias z`` is the largest |mean difference| to ``none`` along four
random directions in units of its standard error (unbiased estimators stay below ≈ 3).

    python benchmarks/theta_variance.py              # ≈ 10 min on 2 cores
    python benchmarks/theta_variance.py --tiny       # seconds, checks the script
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

import adasym_jax as aj
from adasym_jax.objective import log_zeta_estimate
from adasym_jax.sbi.run import sbi_config, train_sbi
from adasym_jax.sbi.tasks import get_task, simulate_dataset
from adasym_jax.batch import Batch
from adasym_jax.train import theta_gradient
from adasym_jax.zeta_sources import Samples

sg = jax.lax.stop_gradient
RESULTS = Path(__file__).parent / "results"
MODES = ("none", "loo", "log_zeta", "log_zeta_loo")
OLD = {"dual_optimizer": "sgd", "theta_baseline": "none"}


def gradient_sets(config, flow, ebm, state, x, ctx, sets: int, key, zeta_per_condition: int = 4):
    """(sets, P) reverse parts per mode, and the forward part's norm, at one seed's ``state``."""
    theta, ebm_vars = state.flow_params, {"params": state.ebm_params, "spectral": state.ebm_stats}
    n = x.shape[0]

    def one(k, mode, lam):
        k_y, k_m = jax.random.split(k)
        if ctx is None:
            m = config.num_zeta_samples
            y_m, log_p_m = flow.apply({"params": theta}, k_m, m, method="sample_and_log_prob")
            log_zeta = log_zeta_estimate(ebm.apply(ebm_vars, y_m), log_p_m)
        else:
            ctx_m = jnp.repeat(ctx, zeta_per_condition, axis=0)
            y_m, log_p_m = flow.apply({"params": theta}, k_m, n * zeta_per_condition, ctx_m, method="sample_and_log_prob")
            log_zeta = log_zeta_estimate(ebm.apply(ebm_vars, y_m, ctx_m).reshape(n, -1), log_p_m.reshape(n, -1))
        y, log_p_s = flow.apply({"params": theta}, k_y, n, ctx, method="sample_and_log_prob")
        y, log_p_s = sg(y), sg(log_p_s)
        log_q_y = ebm.apply(ebm_vars, y, ctx)
        cfg = config.replace(theta_baseline=mode)
        g, _, _ = theta_gradient(cfg, flow, ebm, theta, ebm_vars, lam, Batch(x, ctx), Samples(y, ctx, log_p_s), log_q_y, k_y, log_zeta_y=log_zeta)
        return ravel_pytree(g)[0], jnp.mean(log_zeta)

    rev = {"fw": jnp.asarray(0.0), "rv": jnp.asarray(1.0)}
    fwd = {"fw": jnp.asarray(1.0), "rv": jnp.asarray(0.0)}
    keys = jax.random.split(key, sets)
    out = {}
    for mode in MODES:
        g, lz = jax.jit(jax.vmap(lambda k, mode=mode: one(k, mode, rev)))(keys)
        out[mode] = np.asarray(g)
    g_fw, lz = jax.jit(jax.vmap(lambda k: one(k, "none", fwd)))(keys[:2])
    return out, float(np.linalg.norm(np.asarray(g_fw)[0])), float(np.mean(np.asarray(lz)))


def summarize(grads, fw_norm):
    rows = {}
    dirs = np.random.default_rng(0).normal(size=(4, grads["none"].shape[1]))
    r = grads["none"].shape[0]
    for mode, g in grads.items():
        spread = float(np.mean(np.linalg.norm(g - g.mean(0), axis=1)))
        z = 0.0
        if mode != "none":
            for d in dirs:
                a, b = grads["none"] @ d, g @ d
                z = max(z, abs(a.mean() - b.mean()) / np.sqrt(a.var() / r + b.var() / r))
        rows[mode] = {"spread": spread, "spread_over_fw": spread / fw_norm, "bias_z": float(z)}
    return rows


def gmm40_state(overrides, steps):
    train, test = aj.load_dataset("gmm40")
    config = aj.TrainConfig(**overrides)
    res = aj.fit(train, test_data=test, config=config, seeds=[0], num_steps=steps, eval_every=steps, progress=False)
    state = jax.tree.map(lambda a: a[0], res.state)
    return config, res.trainer, state, jnp.asarray(train), None


def moons_state(overrides, steps, num_simulations):
    task = get_task("two_moons")
    config = sbi_config(task, "adasym", **overrides)
    res = train_sbi(task, num_simulations, "adasym", seeds=[0], steps=steps, eval_every=steps, config=config, mlp_c2st=False, num_posterior_samples=500)
    state = jax.tree.map(lambda a: a[0], res.state)
    beta, u = simulate_dataset(task, jax.random.PRNGKey(7), config.batch_size)
    std = res.standardization()
    if std is not None:
        beta = std.apply(beta)
    return config, res.trainer, state, jnp.asarray(beta, jnp.float32), jnp.asarray(u, jnp.float32)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--sets", type=int, default=200)
    p.add_argument("--num-simulations", type=int, default=10_000)
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--settings", default="gmm40,two_moons", help="comma-separated: gmm40, two_moons")
    p.add_argument("--out", default=str(RESULTS / "theta_variance"))
    args = p.parse_args(argv)
    steps, sets = (20, 8) if args.tiny else (args.steps, args.sets)
    t0 = time.time()
    table = []
    for setting in args.settings.split(","):
        for label, overrides in (("old defaults (sgd on λ, verbatim)", OLD), ("new defaults", {})):
            ov = dict(overrides)
            if args.tiny:
                ov.update(num_transforms=2, ebm_blocks=1, num_zeta_samples=64)
            if setting == "gmm40":
                config, trainer, state, x, ctx = gmm40_state(ov, steps)
            else:
                config, trainer, state, x, ctx = moons_state(ov, steps, 2000 if args.tiny else args.num_simulations)
            grads, fw_norm, log_zeta = gradient_sets(config, trainer.flow, trainer.ebm, state, x, ctx, sets, jax.random.PRNGKey(11))
            rows = summarize(grads, fw_norm)
            table.append({"setting": setting, "state": label, "steps": steps, "log_zeta": log_zeta, "fw_norm": fw_norm, "modes": rows})
            print(json.dumps(table[-1]), flush=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    cmd = "python benchmarks/" + Path(__file__).name + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"command": cmd, "commit": commit, "device": str(jax.devices()[0]), "jax": jax.__version__, "sets": sets, "seconds": round(time.time() - t0)}
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": table}, indent=2))
    lines = [
        "# Spread of the reverse-KL part of ∇θ by θ-weight baseline (issue 15 item 3)",
        "",
        f"`{cmd}` — commit {commit}, {meta['device']}, JAX {meta['jax']}, {sets} sample sets per estimator, one seed, "
        f"{meta['seconds']} s. gmm40: D.1 model and data, N = 800 reverse samples; two moons: D.4 (conditional, B.6), batch "
        f"{1000}, one reverse sample per condition, log ζ̂(u_i) from 4 samples per condition. The state is trained for the "
        "steps shown with the settings in the 'state' column; every estimator is then evaluated at that same state.",
        "",
        "Spread = mean over sample sets of ‖g − ḡ‖ for the reverse part (λ_fw = 0, λ_rv = 1); '/ fw' divides it by the "
        "forward part's norm (λ_fw = 1, λ_rv = 0); bias z = largest |mean difference to `none`| along 4 random directions, "
        "in standard errors (unbiased: below ≈ 3).",
        "",
        "| setting | state | steps | log ζ̂ | none spread (/ fw) | loo spread (/ fw), bias z | log_zeta spread (/ fw), bias z | log_zeta_loo spread (/ fw), bias z |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in table:
        m = r["modes"]
        lines.append(
            f"| {r['setting']} | {r['state']} | {r['steps']} | {r['log_zeta']:.2f} | {m['none']['spread']:.3g} ({m['none']['spread_over_fw']:.2f}) | "
            f"{m['loo']['spread']:.3g} ({m['loo']['spread_over_fw']:.2f}), {m['loo']['bias_z']:.1f} | "
            f"{m['log_zeta']['spread']:.3g} ({m['log_zeta']['spread_over_fw']:.2f}), {m['log_zeta']['bias_z']:.1f} | "
            f"{m['log_zeta_loo']['spread']:.3g} ({m['log_zeta_loo']['spread_over_fw']:.2f}), {m['log_zeta_loo']['bias_z']:.1f} |"
        )
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
