"""AdaptiveController: moves the noise strength ``p`` from D's overfitting signal ``r_d``."""
from __future__ import annotations

import math
from numbers import Real

import torch
import torch.distributed as dist

from .noise import DiffusionNoise
from .presets import preset_kwargs


class AdaptiveController:
    r"""ADA-style adaptation of ``noise.p`` (and so ``T``) from the sign of D's real logits.

    ``observe(real_logits)`` adds ``sum(sign(logits))``, the count and the number of NaNs to three
    float64 accumulators on the device (no host sync). ``update()`` is called once per training step; on every
    ``interval``-th call it all-reduces the accumulators (under ``torch.distributed``), and with

    .. math::
        r_d = \frac{\sum \mathrm{sign}(D(y_{real}, t))}{\#\,\text{logits}}, \qquad
        p \leftarrow \mathrm{clip}\Big(p + \mathrm{sign}(r_d - \text{target})
              \frac{\text{batch\_size}\cdot\text{interval}}{\text{kimg}\cdot 1000},\ 0,\ 1\Big)

    in float64 (``sign(0) = 0``), sets ``noise.p`` and clears the accumulators. That update step
    is the only one that reads back to the host. If no logits were observed, or any was NaN
    (after the all-reduce every rank sees the same NaN), the step is skipped on every rank,
    counted in ``skipped_updates``, and ``r_d`` reads NaN.

    Args:
        noise: the :class:`DiffusionNoise` whose ``p`` this controller drives.
        target: the value of ``r_d`` to hold, in [-1, 1] (the paper uses 0.6).
        interval: adjust every this many ``update()`` calls (training steps), >= 1.
        kimg: thousands of images for ``p`` to move by 1, > 0.
        batch_size: images per step over *all* ranks (the global batch), >= 1.
        process_group: the ``torch.distributed`` group to reduce over (default: the world).

    Example:
        >>> import torch
        >>> noise = DiffusionNoise(t_min=10, t_max=1000)
        >>> ctrl = AdaptiveController(noise, target=0.6, interval=1, kimg=1, batch_size=100)
        >>> ctrl.observe(torch.ones(100))   # D is sure every real is real: r_d = 1 > 0.6
        >>> ctrl.update()
        True
        >>> ctrl.r_d, noise.p, noise.T
        (1.0, 0.1, 109)
    """

    def __init__(
        self,
        noise: DiffusionNoise,
        target: float = 0.6,
        interval: int = 4,
        kimg: float = 100,
        batch_size: int | None = None,
        process_group=None,
    ):
        if not isinstance(noise, DiffusionNoise):
            raise TypeError(f"noise must be a DiffusionNoise; got {type(noise).__name__}")
        if isinstance(target, bool) or not isinstance(target, Real) or not (-1.0 <= target <= 1.0):
            raise ValueError(f"target must lie in [-1, 1] (r_d is a mean of signs); got {target!r}")
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
            raise ValueError(f"interval must be an int >= 1; got {interval!r}")
        if isinstance(kimg, bool) or not isinstance(kimg, Real) or not (math.isfinite(kimg) and kimg > 0):
            raise ValueError(f"kimg must be a finite number > 0; got {kimg!r}")
        if batch_size is None:
            raise ValueError("batch_size is required: pass the global batch size (images per step over all ranks)")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1; got {batch_size!r}")
        self.noise = noise
        self.target = float(target)
        self.interval = interval
        self.kimg = float(kimg)
        self.batch_size = batch_size
        self.process_group = process_group
        self.step = 0  # update() calls so far
        self.skipped_updates = 0  # adjustments skipped for want of finite statistics
        self.r_d = math.nan  # r_d of the last adjustment step
        # [sum of signs, count, NaN count]; torch.sign(NaN) is 0, so NaNs are counted apart.
        self._sums = torch.zeros(3, dtype=torch.float64, device=noise.sqrt_abar.device)

    @classmethod
    def preset(cls, name: str, noise: DiffusionNoise, batch_size: int, **overrides) -> "AdaptiveController":
        """The controller settings of a named preset (see :mod:`diffaug_noise.presets`)."""
        kwargs = preset_kwargs(name, "controller")
        kwargs.update(overrides)
        return cls(noise, batch_size=batch_size, **kwargs)

    @property
    def step_size(self) -> float:
        """``|Δp|`` of one adjustment: ``batch_size * interval / (kimg * 1000)``."""
        return self.batch_size * self.interval / (self.kimg * 1000)

    def observe(self, real_logits: torch.Tensor) -> None:
        """Accumulate ``sum(sign(real_logits))``, their count and NaN count, on the logits' device."""
        if not isinstance(real_logits, torch.Tensor):
            raise TypeError(f"real_logits must be a torch.Tensor; got {type(real_logits).__name__}")
        if not real_logits.is_floating_point():
            raise TypeError(f"real_logits must be D's floating-point outputs; got dtype {real_logits.dtype}")
        if self._sums.device != real_logits.device:  # once, when training moves to its device
            self._sums = self._sums.to(real_logits.device)
        logits = real_logits.detach()
        self._sums[0].add_(logits.sign().sum(dtype=torch.float64))
        self._sums[1].add_(logits.numel())
        self._sums[2].add_(logits.isnan().sum())

    def update(self) -> bool:
        """Count one training step; on every ``interval``-th, adjust ``noise.p``. Returns whether it did."""
        self.step += 1
        if self.step % self.interval:
            return False
        sums = self._sums.clone()
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(sums, op=dist.ReduceOp.SUM, group=self.process_group)
        self._sums.zero_()
        sign_sum, count, nans = sums.tolist()  # the one host sync, on adjustment steps only
        r_d = sign_sum / count if count > 0 and nans == 0 else math.nan
        self.r_d = r_d
        if not math.isfinite(r_d):
            self.skipped_updates += 1
            return False
        direction = (r_d > self.target) - (r_d < self.target)  # sign, with sign(0) = 0
        self.noise.p = min(max(self.noise.p + direction * self.step_size, 0.0), 1.0)
        return True

    def state_dict(self) -> dict:
        """Everything needed to resume exactly: step, accumulators, last r_d and the noise's state."""
        return {
            "step": self.step,
            "skipped_updates": self.skipped_updates,
            "r_d": self.r_d,
            "sums": self._sums.detach().cpu().clone(),
            "noise": self.noise.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` saved (the noise's p, T and tables included), all or nothing.

        Everything is checked before anything changes (the noise's state with
        :meth:`DiffusionNoise.checked_state`); a rejected state raises ``ValueError`` and leaves the
        controller and its noise as they were.
        """
        if not isinstance(state, dict):
            raise TypeError(f"controller state must be a dict from AdaptiveController.state_dict(); got {type(state).__name__}")
        missing = {"step", "skipped_updates", "r_d", "sums", "noise"} - set(state)
        if missing:
            raise ValueError(f"controller state is missing {sorted(missing)}; was it saved by AdaptiveController.state_dict()?")
        counts = {}
        for name in ("step", "skipped_updates"):
            value = state[name]
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"controller state {name!r} must be an int >= 0; got {value!r}")
            counts[name] = value
        r_d = state["r_d"]
        if isinstance(r_d, bool) or not isinstance(r_d, Real) or not (math.isnan(r_d) or -1.0 <= r_d <= 1.0):
            raise ValueError(f"controller state 'r_d' must be a mean of signs in [-1, 1] (or NaN before any adjustment); "
                             f"got {r_d!r}")
        sums = state["sums"]
        if not isinstance(sums, torch.Tensor) or sums.shape != (3,) or sums.dtype != torch.float64:
            got = f"{sums.dtype} {tuple(sums.shape)}" if isinstance(sums, torch.Tensor) else type(sums).__name__
            raise ValueError(f"controller state 'sums' must be a float64 tensor of shape (3,); got {got}")
        sign_sum, count, nans = sums.tolist()
        if not all(math.isfinite(v) for v in (sign_sum, count, nans)) or count < 0 or nans < 0 or abs(sign_sum) > count \
                or count != int(count) or nans != int(nans):
            raise ValueError(f"controller state 'sums' must hold a finite sum of signs within ±count, a whole count "
                             f"and a whole NaN count; got {sums.tolist()}")
        values = self.noise.checked_state(state["noise"])
        self.noise._assign(values)
        self.step, self.skipped_updates, self.r_d = counts["step"], counts["skipped_updates"], float(r_d)
        self._sums = sums.to(self._sums.device).clone()

    def __repr__(self) -> str:
        return (f"AdaptiveController(target={self.target}, interval={self.interval}, kimg={self.kimg:g}, "
                f"batch_size={self.batch_size}, step={self.step}, r_d={self.r_d:.4g}, p={self.noise.p:.6g})")
