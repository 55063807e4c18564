"""A PyTorch + zuko implementation of the D.1 dual step: the peer that ``peer_speed.py`` times.

The stack the paper's authors use, written the way a PyTorch user would write it (eager mode,
one process, one seed at a time), for the same algorithm as ``adasym_jax``'s
:func:`~adasym_jax.train.make_dual_step` with the D.1 settings of ``TrainConfig()``:

* p_θ: ``zuko.flows.NSF`` (fully autoregressive, 5 transforms × 8 bins, MADE hidden (64, 64),
  ReLU, alternating orders, spline bound 5) on a standard-normal base, its MADEs initialized as
  ours (:func:`init_like_ours_`: a fresh flow is the identity).
* f_ψ: the residual EBM of Algorithms 4–5 (SN-Linear(dim → 64) + SiLU; 6 blocks of
  [LayerNorm, SiLU, SN-Linear] × 2, x' = α x + x', SiLU, trainable α = 1; Linear(64 → 1)),
  with spectral normalization as ``adasym_jax.ebm.SpectralDense`` does it: one power iteration
  from the stored u in every forward pass, the gradient through σ with u and v held fixed, and
  the new u stored only by the ζ pass (once per step). Kernels start as flax's ``lecun_normal``
  (truncated normal, variance 1/fan_in), biases at 0, LayerNorm ε = 1e-6, as ours.
* One step: M + N flow samples without gradient (M for log ζ̂ = logsumexp(f(y) − log p(y)) −
  log M, which also runs the power iteration; N = batch size for the reverse KL); ψ descends the
  eq. (15) surrogate (∇ψ ζ through the N samples' importance weights, ``zeta_grad="batch"``);
  θ descends the score-function surrogate of eq. (18) with the leave-one-out baseline
  (``theta_baseline="auto"`` → ``"loo"`` for unconditional models); λ ascends eq. (19) at the
  closed-form relaxations (B.7 form value − λ/2 + 1/(4λ²) for fw and prx, value − λ/2 for rv,
  ζ − 1 − ε_ζ and 1 − ζ) with Adam and is projected onto λ ≥ ``lambda_floor`` (fw, prx) or
  λ ≥ 0. Adam β = (0, 0.9) everywhere; learning rates and initial λ from the config.

The config is any object with ``TrainConfig``'s field names (``adasym_jax.config`` imports
no JAX). Not imported by the library or its tests; needs the ``peer`` extra (torch, zuko).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
import zuko
from torch import nn

from adasym_jax.config import TrainConfig

KL = ("fw", "rv", "prx")
ZETA = ("zeta_u", "zeta_l")


def lecun_normal_(weight: torch.Tensor) -> torch.Tensor:
    """flax's ``lecun_normal``: truncated normal on ±2σ, variance 1/fan_in (``weight (out, in)``)."""
    std = math.sqrt(1.0 / weight.shape[1]) / 0.87962566103423978  # std of N(0, 1) truncated to ±2
    with torch.no_grad():
        return nn.init.trunc_normal_(weight, std=std, a=-2 * std, b=2 * std)


def _normalize(v: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    return v / (torch.linalg.vector_norm(v) + eps)


class SNLinear(nn.Module):
    """Linear layer divided by its power-iteration estimate of σ_max (ours: ``SpectralDense``)."""

    def __init__(self, fan_in: int, fan_out: int):
        super().__init__()
        self.weight = nn.Parameter(lecun_normal_(torch.empty(fan_out, fan_in)))
        self.bias = nn.Parameter(torch.zeros(fan_out))
        self.register_buffer("u", _normalize(torch.randn(fan_out)))

    def forward(self, x: torch.Tensor, update: bool = False) -> torch.Tensor:
        w = self.weight
        with torch.no_grad():
            v = _normalize(w.t() @ self.u)
            u = _normalize(w @ v)
            if update:
                self.u.copy_(u)
        sigma = torch.dot(u, w @ v)  # gradient through w only
        return F.linear(x, w / sigma, self.bias)


class ResidualBlock(nn.Module):
    """Algorithm 5: [LayerNorm, SiLU, SN-Linear] × 2, then SiLU(α x + x')."""

    def __init__(self, hidden: int):
        super().__init__()
        self.norms = nn.ModuleList([nn.LayerNorm(hidden, eps=1e-6) for _ in range(2)])
        self.linears = nn.ModuleList([SNLinear(hidden, hidden) for _ in range(2)])
        self.alpha = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor, update: bool) -> torch.Tensor:
        h = x
        for norm, lin in zip(self.norms, self.linears):
            h = lin(F.silu(norm(h)), update)
        return F.silu(self.alpha * x + h)


class ResidualEBM(nn.Module):
    """Algorithm 4: ``forward(x (n, dim), update) -> log q̃_ψ(x) = f_ψ(x) / T`` of shape ``(n,)``."""

    def __init__(self, dim: int, hidden: int = 64, num_blocks: int = 6, temperature: float = 1.0):
        super().__init__()
        self.inp = SNLinear(dim, hidden)
        self.blocks = nn.ModuleList([ResidualBlock(hidden) for _ in range(num_blocks)])
        self.out = nn.Linear(hidden, 1)
        lecun_normal_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.temperature = temperature

    def forward(self, x: torch.Tensor, update: bool = False) -> torch.Tensor:
        h = F.silu(self.inp(x, update))
        for block in self.blocks:
            h = block(h, update)
        return self.out(h)[:, 0] / self.temperature


def init_like_ours_(flow: zuko.flows.Flow) -> None:
    """Initialize zuko's MADEs as ``AutoregressiveSplineFlow`` does: lecun-normal hidden kernels
    (variance 1/fan_in of the unmasked kernel), zero biases and a zero last layer, so that a fresh
    flow is the identity on N(0, I) (zuko's spline with all-zero raw parameters is the identity)."""
    for transform in flow.transform.transforms:
        layers = [m for m in transform.hyper if isinstance(m, nn.Linear)]
        with torch.no_grad():
            for i, layer in enumerate(layers):
                if i == len(layers) - 1:
                    layer.weight.zero_()
                else:
                    lecun_normal_(layer.weight)
                layer.bias.zero_()


def _adam(params, lr: float, config) -> torch.optim.Adam:
    return torch.optim.Adam(params, lr=lr, betas=(config.adam_b1, config.adam_b2), foreach=True)


class TorchPeer:
    """One seed of the flow p_θ + EBM q_ψ pair with its multipliers and three Adam optimizers.

    ``dual_step(x)`` is one D.1 dual step on the full batch ``x (n, dim)``; ``nf_step(x)`` one
    maximum-likelihood step of the flow alone (the NF baseline); ``test_nll(x)`` −mean log p_θ.
    """

    def __init__(self, dim: int, config: Optional[TrainConfig] = None, seed: int = 0):
        c = self.config = config or TrainConfig()
        if c.context_dim or c.reverse_grad != "score" or c.zeta_grad != "batch" or c.dual_optimizer != "adam":
            raise ValueError("the peer implements the D.1 dual step only (unconditional, score θ-gradient, zeta_grad='batch', Adam on λ)")
        if c.theta_baseline not in ("auto", "loo", "none") or c.flow != "autoregressive" or c.ebm_base_scale is not None:
            raise ValueError("the peer supports theta_baseline auto/loo/none, the autoregressive flow and no EBM base term")
        torch.manual_seed(seed)
        self.flow = zuko.flows.NSF(dim, transforms=c.num_transforms, bins=c.num_bins, hidden_features=tuple(c.flow_hidden))
        init_like_ours_(self.flow)
        self.ebm = ResidualEBM(dim, c.ebm_hidden, c.ebm_blocks, c.temperature)
        self.lam_kl = nn.Parameter(torch.full((3,), float(c.lambda_init)))
        self.lam_zeta = nn.Parameter(torch.full((2,), float(c.lambda_zeta_init)))
        self.opt_theta = _adam(self.flow.parameters(), c.lr_flow, c)
        self.opt_psi = _adam(self.ebm.parameters(), c.lr_ebm, c)
        self.opt_lam = torch.optim.Adam(
            [{"params": [self.lam_kl], "lr": c.lr_dual}, {"params": [self.lam_zeta], "lr": c.lr_dual_zeta}],
            betas=(c.adam_b1, c.adam_b2),
        )
        self.b7 = torch.tensor([k in ("fw", "prx") for k in KL])  # constraints relaxed in the B.7 form
        self.floor_kl = torch.where(self.b7 & c.negative_nll, c.lambda_floor, 0.0)

    def lambdas(self) -> dict[str, torch.Tensor]:
        values = torch.cat([self.lam_kl, self.lam_zeta]).detach()
        return dict(zip(KL + ZETA, values))

    def dual_step(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        c, T = self.config, self.config.temperature
        n = x.shape[0]
        n_rev, m = c.num_reverse_samples or n, c.num_zeta_samples
        lam = self.lambdas()

        # M ζ samples and N reverse-KL samples in one pass of the flow, without gradient; the ζ
        # pass of the EBM runs (and stores) the step's spectral-norm power iteration.
        with torch.no_grad():
            samples, log_p_s = self.flow().rsample_and_log_prob((m + n_rev,))
            y_m, log_p_m, y, log_p_y_s = samples[:m], log_p_s[:m], samples[m:], log_p_s[m:]
            log_zeta = torch.logsumexp(self.ebm(y_m, update=True) - log_p_m, 0) - math.log(m)

        # ψ: eq. (15), ∇ψ ζ through the importance weights of the N reverse samples.
        log_q = self.ebm(torch.cat([x, y]))
        log_q_x, log_q_y = log_q[:n], log_q[n:]
        log_w = log_q_y.detach() - log_p_y_s
        weights = (lam["rv"] * T + lam["prx"]) * torch.exp(log_w - log_zeta) + (lam["zeta_u"] - lam["zeta_l"]) * torch.exp(log_w)
        psi_loss = -lam["prx"] * log_q_x.mean() - lam["rv"] * T * log_q_y.mean() + (weights * log_q_y).mean()

        # θ: eq. (18), score function with the leave-one-out baseline of the weights.
        w = log_p_y_s - log_q_y.detach()
        if c.theta_baseline != "none" and n_rev > 1:
            w = w - (w.sum() - w) / (n_rev - 1)
        log_p = self.flow().log_prob(torch.cat([x, y]))
        log_p_x, log_p_y = log_p[:n], log_p[n:]
        theta_loss = -lam["fw"] * log_p_x.mean() + lam["rv"] * T * (w * log_p_y).mean()

        # The two losses share no parameters: one backward pass gives both gradients.
        self.opt_theta.zero_grad(set_to_none=True)
        self.opt_psi.zero_grad(set_to_none=True)
        (psi_loss + theta_loss).backward()
        self.opt_theta.step()
        self.opt_psi.step()

        # λ: Adam ascent on eq. (19) at the closed-form ε = λ/2, δ = 1/(2λ), then projection.
        with torch.no_grad():
            fw = -log_p_x.mean()
            rv = T * ((log_p_y - log_q_y).mean() + log_zeta)
            prx = -log_q_x.mean() + log_zeta
            zeta = torch.exp(log_zeta)
            lam_kl = self.lam_kl.detach()
            slack = torch.stack([fw, rv, prx]) - lam_kl / 2
            if c.negative_nll:  # B.7 form (+ δ² = 1/(4λ²)) for the two NLL constraints
                slack = slack + torch.where(self.b7, 1 / (4 * lam_kl**2), 0.0)
            self.lam_kl.grad = -slack
            self.lam_zeta.grad = -torch.stack([zeta - 1 - c.eps_zeta, 1 - zeta])
        self.opt_lam.step()
        with torch.no_grad():
            self.lam_kl.copy_(torch.maximum(self.lam_kl, self.floor_kl))
            self.lam_zeta.clamp_(min=0.0)
        return {"fw_nll": fw, "rv_kl": rv, "prx_nll": prx, "log_zeta": log_zeta, **{f"lambda_{k}": v for k, v in lam.items()}}

    def nf_step(self, x: torch.Tensor) -> torch.Tensor:
        """One maximum-likelihood Adam step of the flow (ours: ``method="nf"``)."""
        loss = -self.flow().log_prob(x).mean()
        self.opt_theta.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_theta.step()
        return loss.detach()

    @torch.no_grad()
    def test_nll(self, x: torch.Tensor) -> float:
        return float(-self.flow().log_prob(x).mean())
