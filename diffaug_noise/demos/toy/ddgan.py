"""The toy's ``ddgan`` method: Denoising Diffusion GAN runs (one per seed) as one batched ensemble.

Member ``k`` is one seed's run: ``G(x_t, z, t) → x̂_0`` and ``D(x_{t-1}, x_t, t)``, MLPs of the toy's
widths, over a :class:`~diffaug_noise.ddgan.DenoisingChain` of ``T`` steps. The loss is the official
code's: non-saturating, with R1 (``gamma / 2 · E‖∇_{x_{t-1}} D‖²``) on real pairs in every D step;
fake pairs are ``(x_{t-1} ~ q(x_{t-1} | x_t, x̂_0), x_t)``. G and D have learning rates of their own
(``ddgan_lr_g``, ``ddgan_lr_d``), by default (``ddgan_lr_schedule="cosine"``) decayed along a cosine
to ``LR_FINAL`` by the last iteration, ``lr(s) = LR_FINAL + (lr - LR_FINAL)(1 + cos(pi s)) / 2`` at
training progress ``s`` in [0, 1), and, with ``ddgan_ema > 0``, an exponential moving average of G's
weights samples, as in the official code. Sampling runs the reverse chain: ``T`` generator calls
per sample (the NFE the toy reports). Every random draw comes from the member's
own generator, so a run replays exactly and resumes from a checkpoint bit for bit.
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F

from ...conditioning import TimestepEmbedding
from ...ddgan import DenoisingChain
from ..ensemble import EnsembleMLP

LR_FINAL = 1e-5  # where the official code's cosine schedule ends (its eta_min)


class DdganEnsemble:
    """DDGAN for ``len(seeds)`` toy runs; :meth:`step` trains one iteration, :meth:`sample` draws points."""

    def __init__(self, seeds: list[int], config, device: torch.device):
        self.chain = DenoisingChain(config.ddgan_steps).to(device)
        self.z_dim, self.gamma = config.z_dim, config.r1_gamma
        width = [config.hidden] * 3
        self.G = EnsembleMLP([s + 50_000 for s in seeds],
                             [2 + config.z_dim + config.embed_dim] + width + [2]).to(device)
        self.D = EnsembleMLP([s + 60_000 for s in seeds], [4 + config.embed_dim] + width + [1]).to(device)
        # Sinusoids of log(1 + t) scaled to [0, pi], as the toy's other D sees t.
        self.embed = TimestepEmbedding(config.embed_dim, max_period=10.0, mlp=False).to(device)
        self.t_scale = math.pi / math.log1p(config.ddgan_steps)
        betas = (config.adam_betas[0], config.ddgan_beta2)
        self.opt_g = torch.optim.Adam(self.G.parameters(), config.ddgan_lr_g or config.lr, betas=betas, foreach=True)
        self.opt_d = torch.optim.Adam(self.D.parameters(), config.ddgan_lr_d or config.lr, betas=betas, foreach=True)
        self.lr_final = LR_FINAL if config.ddgan_lr_schedule == "cosine" else None
        self.lr_start = [self.opt_g.param_groups[0]["lr"], self.opt_d.param_groups[0]["lr"]]
        self.ema = config.ddgan_ema
        self.G_ema = copy.deepcopy(self.G).requires_grad_(False) if self.ema else None  # what samples, with an EMA
        self.gens = [torch.Generator(device).manual_seed(s + 70_000) for s in seeds]

    def _e(self, t: torch.Tensor) -> torch.Tensor:
        return self.embed(torch.log1p(t.float()) * self.t_scale)

    def x0_hat(self, x_t, z, t, G=None):
        """``G(x_t, z, t)`` for all members: ``[K, B, 2]`` (``G``: another set of G's weights, the EMA's)."""
        return (self.G if G is None else G)(torch.cat([x_t, z, self._e(t)], dim=2))

    def discriminate(self, x_prev, x_t, t):
        return self.D(torch.cat([x_prev, x_t, self._e(t)], dim=2))

    def _pairs(self, real: torch.Tensor):
        """Per member: ``t ~ U{1..T}``, ``(x_{t-1}, x_t) ~ q``; each ``[K, B, ...]``."""
        ts, prevs, nexts = [], [], []
        for k, g in enumerate(self.gens):
            t = torch.randint(1, self.chain.T + 1, (real.shape[1],), device=real.device, generator=g)
            x_prev, x_t = self.chain.q_sample_pairs(real[k], t - 1, generator=g)
            ts.append(t)
            prevs.append(x_prev)
            nexts.append(x_t)
        return torch.stack(ts), torch.stack(prevs), torch.stack(nexts)

    def _fake_prev(self, x0_hat, x_t, t):
        return torch.stack([self.chain.sample_posterior(x0_hat[k], x_t[k], t[k], generator=g)
                            for k, g in enumerate(self.gens)])

    def step(self, real: torch.Tensor, z_d: torch.Tensor, z_g: torch.Tensor, progress: float = 0.0) -> None:
        """One D step and one G step on ``real [K, B, 2]`` with latents ``z_d``, ``z_g`` ``[K, B, z_dim]``.

        ``progress``: the share of training done before this step, which sets the decayed learning rate
        (a function of the step alone, so a resumed run needs no scheduler state).
        """
        if self.lr_final is not None:
            share = (1 + math.cos(math.pi * progress)) / 2
            for opt, lr in zip((self.opt_g, self.opt_d), self.lr_start):
                opt.param_groups[0]["lr"] = self.lr_final + (lr - self.lr_final) * share
        t, x_prev, x_t = self._pairs(real)
        x_prev.requires_grad_(True)
        real_logits = self.discriminate(x_prev, x_t, t)
        (grad,) = torch.autograd.grad(real_logits.sum(), x_prev, create_graph=True)
        r1 = self.gamma / 2 * grad.pow(2).sum(dim=2).mean(dim=1).sum()
        with torch.no_grad():
            fake_prev = self._fake_prev(self.x0_hat(x_t, z_d, t), x_t, t)
        fake_logits = self.discriminate(fake_prev, x_t, t)
        loss_d = (F.softplus(-real_logits).mean(dim=(1, 2)) + F.softplus(fake_logits).mean(dim=(1, 2))).sum() + r1
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()

        t, _, x_t = self._pairs(real)  # the official G step draws new t and pairs
        self.D.requires_grad_(False)
        fake_prev = self._fake_prev(self.x0_hat(x_t, z_g, t), x_t, t)
        loss_g = F.softplus(-self.discriminate(fake_prev, x_t, t)).mean(dim=(1, 2)).sum()
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        self.D.requires_grad_(True)
        if self.G_ema is not None:
            with torch.no_grad():
                for average, weights in zip(self.G_ema.parameters(), self.G.parameters()):
                    average.lerp_(weights, 1 - self.ema)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` points per member by the reverse chain from ``x_T ~ N(0, I)``: ``[K, n, 2]``, ``T`` G calls."""
        K = len(self.gens)
        device = self.chain.betas.device
        x_T = torch.randn(K * n, 2, generator=generator).to(device)

        def model(x, z, t):  # the chain works on [K*n, 2]; the ensemble on [K, n, 2]
            return self.x0_hat(x.view(K, n, 2), z.view(K, n, -1), t.view(K, n), G=self.G_ema).reshape(K * n, 2)

        return self.chain.sample(model, x_T, self.z_dim, generator=_on(generator, device)).view(K, n, 2).cpu()

    def state_dict(self) -> dict:
        return {"G": self.G.state_dict(), "D": self.D.state_dict(), "opt_g": self.opt_g.state_dict(),
                "opt_d": self.opt_d.state_dict(), "gens": [g.get_state() for g in self.gens],
                "G_ema": None if self.G_ema is None else self.G_ema.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        if self.G_ema is not None:
            self.G_ema.load_state_dict(state["G_ema"])
        for g, s in zip(self.gens, state["gens"]):
            g.set_state(s.cpu() if g.device.type == "cpu" else s)


def _on(generator: torch.Generator, device: torch.device) -> torch.Generator:
    """``generator`` if it lives on ``device``, else a generator there seeded from it."""
    if generator.device.type == device.type:
        return generator
    return torch.Generator(device).manual_seed(int(torch.randint(2 ** 62, (1,), generator=generator)))
