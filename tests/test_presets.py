"""Experiment presets (issue 11, Deliver 5): each holds the numbers of its section of Appendix D,
and the command line, the aliases and the benchmarks read them.

The expected values below are copied from the paper's text (Appendix D), not from the code.
"""

import ast
import json
from pathlib import Path

import pytest

from adasym_jax import presets
from adasym_jax.config import TrainConfig, parse_override


def _has(config: TrainConfig, **expected):
    got = {k: getattr(config, k) for k in expected}
    assert got == expected


def test_gmm40_is_appendix_d1():
    # D.1: "800 samples ... test set 10,000 samples ... 100,000 iterations with full batches";
    # "Lagrange multipliers ... 10^-4, ... ζ ... 10^-3 where ε_ζ = 0.1"; "B.7 in all datasets";
    # "neural spline flow ... 5 transforms and 8 bins"; "residual MLP ... 6 residual blocks and a
    # hidden dimension of 64"; "LR of 10^-3 for p_θ and 10^-4 for q_ψ"; "M=1000 samples";
    # P-W weights "{0.2, 0.5, 1.0, 2.0, 5.0}"; WGAN "LR ... critic of 10^-5", generator "10^-3 or
    # 10^-5", "gradient penalty ... coefficient of 0.1".
    p = presets.gmm40()
    _has(p.config, method="adasym", num_transforms=5, num_bins=8, ebm_blocks=6, ebm_hidden=64, lr_flow=1e-3,
         lr_ebm=1e-4, lr_dual=1e-4, lr_dual_zeta=1e-3, eps_zeta=0.1, num_zeta_samples=1000, negative_nll=True,
         batch_size=None, gp_weight=0.1)  # fmt: skip
    assert p.config == TrainConfig()  # the defaults are D.1
    assert dict(p.run) == {
        "dataset": "gmm40", "num_train": 800, "num_test": 10_000, "steps": 100_000, "batch_size": None,
        "pw_weights": (0.2, 0.5, 1.0, 2.0, 5.0), "wgan_lr_critic": 1e-5, "wgan_lr_generator": (1e-3, 1e-5),
        "wgan_gp_weight": 0.1,
    }  # fmt: skip


def test_density2d_is_appendix_d2():
    # D.2: "train set of 1000 samples and a test set of 10000 samples and trained for 25000
    # full-batch iterations"; "LR of 10^-3 for p_θ and NF, and LR of 10^-4 for q_ψ"; "M=1000";
    # multipliers "10^-4", ζ pair "10^-3", "ε_ζ=0.1"; "initial values for the KL Lagrange
    # multipliers was set to 0.01"; density maps on "64×64 pixels".
    p = presets.density2d()
    _has(p.config, lr_flow=1e-3, lr_ebm=1e-4, num_zeta_samples=1000, lr_dual=1e-4, lr_dual_zeta=1e-3, eps_zeta=0.1,
         lambda_init=0.01, batch_size=None)  # fmt: skip
    assert (p.run["num_train"], p.run["num_test"], p.run["steps"], p.run["batch_size"]) == (1000, 10_000, 25_000, None)
    assert p.run["grid_pixels"] == 64
    assert sorted(p.run["datasets"]) == sorted(["gmm_ring", "gmm_grid", "moons", "spiral", "rings"])  # "5 different distributions"


def test_data_registry_sizes_are_the_presets():
    from adasym_jax.data import DATASETS

    assert (DATASETS["gmm40"].n_train, DATASETS["gmm40"].n_test) == (presets.gmm40().run["num_train"], presets.gmm40().run["num_test"])
    for name in presets.density2d().run["datasets"]:
        assert (DATASETS[name].n_train, DATASETS[name].n_test) == (1000, 10_000)


def test_latent_celeba_is_appendix_d3():
    # D.3: "neural spline flow ... 6 transforms and 16 bins"; "residual MLP ... 5 residual blocks
    # and a hidden dimension of 1024"; "temperature 0.01"; "5000 samples to estimate ζ_ψ ...
    # only every 100 iterations"; "40 epochs with batch size 128"; "LR for p_θ and NF was 10^-3,
    # and for q_ψ it was 10^-6"; multipliers "10^-6", ζ pair "10^-4", "ε_ζ = 100".
    # C.2 (the autoencoder): 100-D encodings (Section 5.3), 20 epochs, batch 128, LR 1e-3.
    p = presets.latent("celeba")
    _has(p.config, method="adasym", num_transforms=6, num_bins=16, ebm_blocks=5, ebm_hidden=1024, temperature=0.01,
         num_zeta_samples=5000, batch_size=128, lr_flow=1e-3, lr_ebm=1e-6, lr_dual=1e-6, lr_dual_zeta=1e-4,
         eps_zeta=100.0)  # fmt: skip
    _run = p.run
    assert (_run["epochs"], _run["zeta_every"], _run["latent_dim"]) == (40, 100, 100)
    assert (_run["ae_epochs"], _run["ae_batch"], _run["ae_lr"]) == (20, 128, 1e-3)
    assert presets.latent() == p  # celeba is the default


def test_latent_aliases_and_defaults_are_the_celeba_preset():
    from adasym_jax.latent.run import PAPER_CONFIG, PAPER_EPOCHS, AutoencoderSettings, Recipe

    p = presets.latent("celeba")
    assert PAPER_CONFIG == p.config and PAPER_EPOCHS == p.run["epochs"]
    r, ae = Recipe(), AutoencoderSettings()
    assert (r.warm_start_steps, r.warm_start_samples, r.warm_start_lr, r.zeta_every) == tuple(
        p.run[k] for k in ("warm_start_steps", "warm_start_samples", "warm_start_lr", "zeta_every")
    )
    assert (ae.latent_dim, ae.epochs, ae.batch_size, ae.lr) == tuple(p.run[k] for k in ("latent_dim", "ae_epochs", "ae_batch", "ae_lr"))


def test_digits_preset_is_smaller_than_celeba():
    small, paper = presets.latent("digits"), presets.latent("celeba")
    ebm_size = lambda c: c.ebm_blocks * c.ebm_hidden**2  # noqa: E731  (the residual blocks' weights)
    assert ebm_size(small.config) < ebm_size(paper.config) / 20
    assert small.config.num_zeta_samples < paper.config.num_zeta_samples
    assert small.config.eval_zeta_samples <= paper.config.eval_zeta_samples
    assert small.run["warm_start_steps"] < paper.run["warm_start_steps"]
    assert small.run["warm_start_samples"] < paper.run["warm_start_samples"]
    assert small.run["latent_dim"] < paper.run["latent_dim"]
    # the recipe itself is D.3's: flow, temperature, learning rates, ε_ζ, batch, ζ period
    for k in ("num_transforms", "num_bins", "temperature", "lr_flow", "lr_ebm", "lr_dual", "lr_dual_zeta", "eps_zeta", "batch_size"):
        assert getattr(small.config, k) == getattr(paper.config, k), k
    assert small.run["zeta_every"] == paper.run["zeta_every"]
    with pytest.raises(ValueError, match="unknown latent preset"):
        presets.latent("mnist")


@pytest.mark.parametrize("task, blocks, hidden", [("two_moons", 3, 128), ("gaussian_mixture", 6, 64)])
def test_sbi_is_appendix_d4(task, blocks, hidden):
    # D.4: "p_θ and NF ... 4 transforms and 8 bins"; Gaussian mixture "6 residual blocks and a
    # hidden dimension of 64 and 2 FiLM layers"; two moons "3 residual blocks, each with 128
    # channels and 2 FiLM layers"; "batch size of 1000"; "negative NLL formulation (Section
    # B.7)"; "LR of 10^-4 for p_θ and NF, and LR of 10^-5 for q_ψ"; multipliers "10^-6", ζ pair
    # "10^-2", "ε_ζ = 30"; KL multipliers start at "0.01"; C2ST on "5000 samples" of each;
    # Langevin "2000 steps with a step size of 10^-4".
    from adasym_jax.sbi.run import sbi_config
    from adasym_jax.sbi.tasks import get_task

    p = presets.sbi(task)
    _has(p.config, method="adasym", context_dim=2, num_transforms=4, num_bins=8, ebm_blocks=blocks, ebm_hidden=hidden,
         film_layers=2, batch_size=1000, negative_nll=True, lr_flow=1e-4, lr_ebm=1e-5, lr_dual=1e-6,
         lr_dual_zeta=1e-2, eps_zeta=30.0, lambda_init=0.01, zeta_per_condition=presets.SBI_ZETA_PER_CONDITION)  # fmt: skip
    assert (p.run["num_posterior_samples"], p.run["langevin_steps"], p.run["langevin_step_size"]) == (5000, 2000, 1e-4)
    assert presets.sbi(get_task(task)) == p  # a task object or its name
    # the NF baseline is the same preset with maximum likelihood (no ζ, so no per-condition samples)
    assert sbi_config(get_task(task), "nf", lr_flow=3e-4) == p.config.replace(method="nf", lr_flow=3e-4, zeta_per_condition=0)
    with pytest.raises(ValueError, match="unknown SBI method"):
        presets.sbi(task, "wgan")


def test_demo_is_the_cli_demo():
    from adasym_jax import cli

    p = presets.demo()
    assert dict(p.run) == {"dataset": "moons", "method": "adasym", "seeds": "2", "steps": 1000, "eval_every": 100}
    assert cli.DEMO == dict(p.run)
    assert p.config == TrainConfig()


def test_presets_are_read_only():
    p = presets.sbi("two_moons")
    with pytest.raises(TypeError):
        p.run["steps"] = 5  # type: ignore[index]
    assert p.replace(lr_flow=1e-3).config.lr_flow == 1e-3 and p.config.lr_flow == 1e-4


def test_presets_sit_low_in_the_import_graph():
    tree = ast.parse(Path(presets.__file__).read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("adasym_jax"):
            imported.add(node.module)
        elif isinstance(node, ast.Import):
            imported |= {a.name for a in node.names if a.name.startswith("adasym_jax")}
    assert imported <= {"adasym_jax.config", "adasym_jax.sbi.tasks"}, imported


def test_latent_cli_takes_its_defaults_from_the_preset():
    from adasym_jax import cli, latent_cli

    parser = cli.build_parser()
    for argv, name in ((["--dataset", "digits"], "digits"), (["--images", "x.npy"], "celeba"),
                       (["--images", "x.npy", "--preset", "digits"], "digits"),
                       (["--dataset", "digits", "--preset", "celeba"], "celeba")):  # fmt: skip
        args = parser.parse_args(["latent", *argv, "--out", "r"])
        config = latent_cli._config(args)
        p = presets.latent(name)
        assert config == p.config
        for key in latent_cli._PRESET_ARGS:
            assert getattr(args, key) == p.run[key], (name, key)
    # flags win over the preset; --set on top of it
    args = parser.parse_args(["latent", "--dataset", "digits", "--out", "r", "--epochs", "3", "--warm-start-steps", "7",
                              "--set", "ebm_hidden=32"])  # fmt: skip
    config = latent_cli._config(args)
    assert (args.epochs, args.warm_start_steps) == (3, 7)
    assert config == presets.latent("digits").config.replace(ebm_hidden=32)


SBI_TINY = ["num_transforms=2", "num_bins=4", "flow_hidden=16", "ebm_hidden=16", "ebm_blocks=1", "film_layers=1",
            "batch_size=100", "lr_dual_zeta=1.0", "eps_zeta=0.1"]  # fmt: skip


def test_sbi_cli_config_is_the_preset_plus_overrides(tmp_path):
    pytest.importorskip("sklearn")
    from adasym_jax import cli

    out = tmp_path / "sbi"
    argv = ["sbi", "--task", "two_moons", "--num-simulations", "300", "--method", "nf", "--seeds", "1", "--steps", "2",
            "--eval-every", "2", "--no-mlp-c2st", "--out", str(out), "--set", *SBI_TINY]  # fmt: skip
    assert cli.main(argv) == 0
    expected = presets.sbi("two_moons", "nf").config
    for o in SBI_TINY:
        expected = parse_override(o, expected)
    saved = json.loads((out / "config.json").read_text())["config"]
    assert TrainConfig.from_dict(saved) == expected
