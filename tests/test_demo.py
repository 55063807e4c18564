"""README's main job, shortened: with the paper's defaults both p_θ and q̃_ψ put their mass on
the data (issue 15 item 4). Full D.1 model, one seed, a few hundred steps."""

import numpy as np
import pytest

from adasym_jax.cli import main
from adasym_jax.plotting import grid_points, plot_limits
from adasym_jax.results import evaluate_run, load_run


def mass_near_data(log_density: np.ndarray, grid: np.ndarray, data: np.ndarray, radius: float) -> tuple[float, float]:
    """(share of the grid-normalized density within ``radius`` of a data point, share of the
    grid's area there). A density that ignores the data has the two about equal."""
    d = np.min(np.linalg.norm(grid[:, None, :] - data[None, :, :], axis=-1), axis=1)
    near = d < radius
    w = np.exp(log_density - log_density.max())
    return float((w * near).sum() / w.sum()), float(near.mean())


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "run"
    assert main(["train", "--out", str(out), "--steps", "400", "--eval-every", "200", "--seeds", "1"]) == 0
    return load_run(out)


def test_shortened_demo_puts_both_densities_on_the_data(demo_run):
    from adasym_jax.data import load_dataset

    train, _ = load_dataset("moons")
    xlim, ylim = plot_limits(train)
    grid, _ = grid_points(xlim, ylim, 48)
    scale = max(xlim[1] - xlim[0], ylim[1] - ylim[0])
    dens = evaluate_run(demo_run, grid)
    # measured at 400 steps: within 0.02·scale of the data (23 % of the map) p_θ puts 72 % of
    # its mass and q̃_ψ 57 %; beyond 0.1·scale (27 % of the map) 0.6 % and 1.9 %
    for name in ("log_p", "log_q"):
        log_d = np.asarray(dens[name])[0]
        mass, area = mass_near_data(log_d, grid, train[:500], 0.02 * scale)
        assert mass > 1.8 * area, (name, mass, area)  # on the data: well above what a flat density puts there
        mass, area = mass_near_data(log_d, grid, train[:500], 0.1 * scale)
        assert 1.0 - mass < 0.25 * (1.0 - area), (name, mass, area)  # off the data: far below


def test_mass_near_data_tells_a_flat_density_from_one_on_the_data():
    rng = np.random.default_rng(0)
    data = rng.normal(size=(200, 2)) * 0.1 + np.array([1.0, 1.0])
    grid, _ = grid_points((-2, 2), (-2, 2), 48)
    flat = np.zeros(len(grid))
    peaked = -np.sum((grid - 1.0) ** 2, axis=1) / (2 * 0.1**2)
    m_flat, area = mass_near_data(flat, grid, data, 0.3)
    m_peak, _ = mass_near_data(peaked, grid, data, 0.3)
    assert abs(m_flat - area) < 1e-9 and m_peak > 0.9 > 2 * area
