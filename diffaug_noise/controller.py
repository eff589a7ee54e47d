"""AdaptiveController: moves the noise strength ``p`` from D's overfitting signal ``r_d``."""
from __future__ import annotations

import math
import warnings
from numbers import Real
from statistics import NormalDist

import torch
import torch.distributed as dist

from .noise import DiffusionNoise
from .presets import preset_kwargs
from .settings import DEFAULTS, SIGNALS, check


def relativistic_target(sign_target: float = 0.6) -> float:
    r"""The relativistic signal's target that asks of D what ``sign_target`` asks of the sign signal.

    With real logits :math:`N(\mu, s^2)` and fake ones :math:`N(-\mu, s^2)` (a D as sure of one side
    as of the other), the sign signal reads :math:`2\Phi(\mu/s) - 1` and the relativistic one, on
    independent pairs, :math:`2\Phi(\sqrt2\,\mu/s) - 1`. The target of equal :math:`\mu/s` is
    :math:`2\Phi(\sqrt2\,\Phi^{-1}((1 + t)/2)) - 1`; the paper's 0.6 (80 % of the reals called real)
    becomes 0.766 (88 % of the pairs ranked right).

    Example:
        >>> round(relativistic_target(0.6), 3), relativistic_target(0.0)
        (0.766, 0.0)
    """
    if not -1.0 < sign_target < 1.0:
        raise ValueError(f"sign_target must lie in (-1, 1); got {sign_target!r}")
    unit = NormalDist()
    return 2 * unit.cdf(math.sqrt(2) * unit.inv_cdf((1 + sign_target) / 2)) - 1


DEFAULT_TARGETS = {"sign": 0.6, "relativistic": relativistic_target(0.6)}


class AdaptiveController:
    r"""ADA-style adaptation of ``noise.p`` (and so ``T``) from a signal of how sure D is of the reals.

    ``observe(...)`` adds the sum of the signal's per-sample values, their count and the number of
    NaNs to three float64 accumulators on the device (no host sync). ``update()`` is called once per
    training step; on every ``interval``-th call it all-reduces the accumulators (under
    ``torch.distributed``), and with :math:`r_d` their mean,

    .. math::
        p \leftarrow \mathrm{clip}\Big(p + \mathrm{sign}(r_d - \text{target})
              \frac{\text{batch\_size}\cdot\text{interval}}{\text{kimg}\cdot 1000},\ 0,\ 1\Big)

    in float64 (``sign(0) = 0``), sets ``noise.p`` and clears the accumulators. That update step
    is the only one that reads back to the host. If no value was observed, or any input was NaN
    (after the all-reduce every rank sees the same NaN), the step is skipped on every rank,
    counted in ``skipped_updates``, and ``r_d`` reads NaN.

    The signals (``r_d`` is 1 when D separates every real, -1 when it calls every real fake):

    - ``"sign"``: :math:`r_d = E[\mathrm{sign}(D(y_{real}) - \text{centre})]`, the paper's. ``centre`` is
      D's decision boundary: 0 for non-saturating and hinge logits, the midpoint of the targets for
      least squares (0.5 with targets 0/1). Default target 0.6: 80 % of the reals on the real side.
    - ``"relativistic"``: :math:`r_d = E[\mathrm{sign}(D(y_{real,i}) - D(y_{fake,i}))]` over the pairs
      D compares (``observe(real_logits, fake_logits)``), for relativistic losses (R3GAN) and for
      critics whose values have no fixed centre (WGAN). Default target
      :func:`relativistic_target` (0.6) = 0.766: 88 % of the pairs ranked right, what the paper's 0.6
      asks of a D equally sure of both sides.
    - a callable ``signal(real_logits, fake_logits) -> values``: per-sample values in [-1, 1] whose mean
      is ``r_d`` (``fake_logits`` is None when ``observe`` got none); its target must be given. Its
      values are checked at ``observe`` (real, within [-1, 1] or NaN; one host sync per call).

    Drift guard: when ``T`` has sat at ``t_max`` (``p = 1``) for ``drift_updates`` adjustments in a
    row, or at ``t_min`` (``p = 0``) with ``r_d`` more than 0.5 below the target, the controller says
    so once (a warning, :attr:`drift`, and the tick line through the integrations), with what to try.

    Args:
        noise: the :class:`DiffusionNoise` whose ``p`` this controller drives.
        target: the value of ``r_d`` to hold, in [-1, 1] (default: the signal's, see above).
        interval: adjust every this many ``update()`` calls (training steps), >= 1.
        kimg: thousands of images for ``p`` to move by 1, > 0.
        batch_size: images per step over *all* ranks (the global batch), >= 1.
        process_group: the ``torch.distributed`` group to reduce over (default: the world).
        signal: ``"sign"``, ``"relativistic"`` or a callable (see above).
        centre: the sign signal's decision boundary on D's logits (``"sign"`` only).
        drift_updates: adjustments at an extreme before the drift guard speaks, >= 1; None: never.

    Example:
        >>> import torch
        >>> noise = DiffusionNoise(t_min=10, t_max=1000)
        >>> ctrl = AdaptiveController(noise, target=0.6, interval=1, kimg=1, batch_size=100)
        >>> ctrl.observe(torch.ones(100))   # D is sure every real is real: r_d = 1 > 0.6
        >>> ctrl.update()
        True
        >>> ctrl.r_d, noise.p, noise.T
        (1.0, 0.1, 109)
        >>> lsgan = AdaptiveController(DiffusionNoise(), batch_size=8, signal="sign", centre=0.5)  # targets 0/1
        >>> r3gan = AdaptiveController(DiffusionNoise(), batch_size=8, signal="relativistic")
        >>> r3gan.observe(torch.tensor([0.2, 0.9]), torch.tensor([-0.5, 1.3]))  # one pair right, one wrong
    """

    DRIFT_MARGIN = 0.5  # r_d this far below the target at t_min counts as drift

    def __init__(
        self,
        noise: DiffusionNoise,
        target: float | None = DEFAULTS["target"],
        interval: int = DEFAULTS["interval"],
        kimg: float = DEFAULTS["kimg"],
        batch_size: int | None = None,
        process_group=None,
        signal=DEFAULTS["signal"],
        centre: float = DEFAULTS["centre"],
        drift_updates: int | None = 200,
    ):
        if not isinstance(noise, DiffusionNoise):
            raise TypeError(f"noise must be a DiffusionNoise; got {type(noise).__name__}")
        self.check_config(target=target, interval=interval, kimg=kimg, signal=signal, centre=centre,
                          drift_updates=drift_updates)
        target = DEFAULT_TARGETS[signal] if target is None else target
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
        self.signal = signal
        self.centre = float(centre)
        self.drift_updates = drift_updates
        self.step = 0  # update() calls so far
        self.skipped_updates = 0  # adjustments skipped for want of finite statistics
        self.r_d = math.nan  # r_d of the last adjustment step
        self.pinned = 0  # adjustments in a row at an extreme: > 0 at t_max, < 0 at t_min far below the target
        self.drift: str | None = None  # the drift guard's message, once it has spoken
        # [sum of values, count, NaN count]; torch.sign(NaN) is 0, so NaNs are counted apart.
        self._sums = torch.zeros(3, dtype=torch.float64, device=noise.sqrt_abar.device)

    @staticmethod
    def check_config(target=DEFAULTS["target"], interval=DEFAULTS["interval"], kimg=DEFAULTS["kimg"],
                     signal=DEFAULTS["signal"], centre=DEFAULTS["centre"], drift_updates=200, **_ignored) -> None:
        """Check constructor arguments as the constructor does, building nothing (settings objects validate with it).

        Example:
            >>> AdaptiveController.check_config(signal="relativistic", centre=0.5)
            Traceback (most recent call last):
            ...
            ValueError: centre is the sign signal's decision boundary; the 'relativistic' signal has none
        """
        if not callable(signal) and signal not in SIGNALS:
            raise ValueError(f"unknown signal {signal!r}; choose one of {', '.join(SIGNALS)} or pass a callable")
        if target is None and callable(signal):
            raise ValueError("a callable signal needs its target: pass target=... (the r_d to hold, in [-1, 1])")
        for name, value in (("target", target), ("interval", interval), ("kimg", kimg), ("centre", centre)):
            check(name, value)  # the catalogue's rules: the same as every command's --name
        if centre != 0.0 and signal != "sign":
            raise ValueError(f"centre is the sign signal's decision boundary; the {signal!r} signal has none")
        if drift_updates is not None and (isinstance(drift_updates, bool) or not isinstance(drift_updates, int)
                                          or drift_updates < 1):
            raise ValueError(f"drift_updates must be an int >= 1 or None; got {drift_updates!r}")

    @classmethod
    def preset(cls, name: str, noise: DiffusionNoise, batch_size: int, **overrides) -> "AdaptiveController":
        """The controller settings of a named preset (see :mod:`diffaug_noise.presets`)."""
        return cls(noise, batch_size=batch_size, **preset_kwargs(name, "controller", **overrides))

    @property
    def step_size(self) -> float:
        """``|Δp|`` of one adjustment: ``batch_size * interval / (kimg * 1000)``."""
        return self.batch_size * self.interval / (self.kimg * 1000)

    @property
    def signal_name(self) -> str:
        """``"sign"``, ``"relativistic"`` or ``"callable:module.name"`` (what state dicts record)."""
        if callable(self.signal):
            return f"callable:{getattr(self.signal, '__module__', '?')}.{getattr(self.signal, '__qualname__', '?')}"
        return self.signal

    def observe(self, real_logits: torch.Tensor, fake_logits: torch.Tensor | None = None) -> None:
        """Accumulate the signal's values on D's logits of the reals (and, for pairs, the fakes).

        No host sync for the built-in signals. A callable signal's values are checked here (real,
        within [-1, 1] or NaN), which costs one host sync per call; a rejected call changes nothing.
        """
        for name, logits in (("real_logits", real_logits), ("fake_logits", fake_logits)):
            if logits is None:
                continue
            if not isinstance(logits, torch.Tensor):
                raise TypeError(f"{name} must be a torch.Tensor; got {type(logits).__name__}")
            if not logits.is_floating_point():
                raise TypeError(f"{name} must be D's floating-point outputs; got dtype {logits.dtype}")
            if logits.is_meta:
                raise ValueError(f"{name} is on the meta device (shapes without values); pass D's real outputs")
        if fake_logits is not None and fake_logits.device != real_logits.device:
            raise ValueError(f"fake_logits are on {fake_logits.device} but real_logits on {real_logits.device}; pass "
                             "both from one device")
        if self.signal == "relativistic":
            if fake_logits is None or fake_logits.shape != real_logits.shape:
                got = "none" if fake_logits is None else f"shape {tuple(fake_logits.shape)}"
                raise ValueError(f"the relativistic signal compares pairs: pass fake_logits of real_logits' shape "
                                 f"{tuple(real_logits.shape)}; got {got}")
        elif self.signal == "sign" and fake_logits is not None:
            raise ValueError("the sign signal reads the real logits only; pass fake_logits with signal='relativistic'")
        real = real_logits.detach()
        fake = None if fake_logits is None else fake_logits.detach()
        if self.signal == "sign":
            values, nans = (real - self.centre).sign(), real.isnan().sum()
        elif self.signal == "relativistic":
            values, nans = (real - fake).sign(), real.isnan().sum() + fake.isnan().sum()
        else:
            values = self._checked_values(self.signal(real, fake))
            nans = values.isnan().sum()
        if self._sums.device != real_logits.device:  # once, when training moves to its device
            self._sums = self._sums.to(real_logits.device)
        self._sums[0].add_(values.nan_to_num(0.0).sum(dtype=torch.float64))
        self._sums[1].add_(values.numel())
        self._sums[2].add_(nans)

    def _checked_values(self, values) -> torch.Tensor:
        """A callable signal's output, refused unless a real tensor with every value in [-1, 1] or NaN."""
        if not isinstance(values, torch.Tensor):
            raise TypeError(f"signal {self.signal_name} must return a tensor of values in [-1, 1]; "
                            f"got {type(values).__name__}")
        if values.is_complex() or values.dtype == torch.bool or values.is_meta:
            raise TypeError(f"signal {self.signal_name} must return real values in [-1, 1]; got dtype {values.dtype}"
                            f"{' on the meta device' if values.is_meta else ''}")
        values = values.detach()
        outside = (values < -1) | (values > 1)
        count = int(outside.sum())  # the host sync a callable signal costs
        if count:
            low, high = values[outside | (values.abs() <= 1)].aminmax()
            raise ValueError(f"signal {self.signal_name} must return values in [-1, 1]; got {count} value(s) outside, "
                             f"from {float(low):g} to {float(high):g} (signs, or shares mapped to them)")
        return values

    def update(self) -> bool:
        """Count one training step; on every ``interval``-th, adjust ``noise.p``. Returns whether it did."""
        self.step += 1
        if self.step % self.interval:
            return False
        sums = self._sums.clone()
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(sums, op=dist.ReduceOp.SUM, group=self.process_group)
        self._sums.zero_()
        total, count, nans = sums.tolist()  # the one host sync, on adjustment steps only
        r_d = total / count if count > 0 and nans == 0 else math.nan  # in [-1, 1]: observe() checked every value
        self.r_d = r_d
        if not math.isfinite(r_d):
            self.skipped_updates += 1
            return False
        direction = (r_d > self.target) - (r_d < self.target)  # sign, with sign(0) = 0
        self.noise.p = min(max(self.noise.p + direction * self.step_size, 0.0), 1.0)
        self._watch_drift(r_d)
        return True

    def _watch_drift(self, r_d: float) -> None:
        """Count adjustments at an extreme; say once, in one line, when they have lasted ``drift_updates``."""
        at_max = self.noise.p == 1.0
        stuck_low = self.noise.p == 0.0 and r_d < self.target - self.DRIFT_MARGIN
        if at_max:
            self.pinned = self.pinned + 1 if self.pinned > 0 else 1
        elif stuck_low:
            self.pinned = self.pinned - 1 if self.pinned < 0 else -1
        else:
            self.pinned = 0
        if self.drift is not None or self.drift_updates is None or abs(self.pinned) < self.drift_updates:
            return
        if at_max:
            self.drift = (f"T has been at t_max = {self.noise.t_max} for {self.pinned} adjustments (r_d {r_d:+.2f} "
                          f"above the target {self.target:g}): D separates the reals even through the most noise. Try "
                          "a larger t_max or sigma, check that D is conditioned on t, or a signal that suits the loss "
                          "(docs/method.md); samples may be drifting towards noise")
        else:
            self.drift = (f"T has stayed at t_min = {self.noise.t_min} for {-self.pinned} adjustments with r_d "
                          f"{r_d:+.2f}, far below the target {self.target:g}: the noise is not what holds D back. The "
                          "target may not suit this loss or D (the sign signal's centre, or signal='relativistic'; "
                          "docs/method.md)")
        warnings.warn(f"diffaug-noise drift guard: {self.drift}", stacklevel=3)

    def state_dict(self) -> dict:
        """Everything needed to resume exactly: step, accumulators, last r_d, the signal, the drift guard, the noise."""
        return {
            "step": self.step,
            "skipped_updates": self.skipped_updates,
            "r_d": self.r_d,
            "sums": self._sums.detach().cpu().clone(),
            "signal": self.signal_name,
            "centre": self.centre,
            "target": self.target,
            "pinned": self.pinned,
            "drift": self.drift,
            "noise": self.noise.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` saved (the noise's p, T and tables included), all or nothing.

        Everything is checked before anything changes (the noise's state with
        :meth:`DiffusionNoise.checked_state`); a rejected state raises ``ValueError`` and leaves the
        controller and its noise as they were. The signal, its centre and the target must be this
        controller's (states written before signals existed were the sign signal's, centre 0).
        """
        if not isinstance(state, dict):
            raise TypeError("controller state must be a dict from AdaptiveController.state_dict(); got "
                            f"{type(state).__name__}")
        missing = {"step", "skipped_updates", "r_d", "sums", "noise"} - set(state)
        if missing:
            raise ValueError(f"controller state is missing {sorted(missing)}; was it saved by "
                             "AdaptiveController.state_dict()?")
        mine = {"signal": self.signal_name, "centre": self.centre, "target": self.target}
        saved = {"signal": state.get("signal", "sign"), "centre": state.get("centre", 0.0),
                 "target": state.get("target", self.target)}
        differ = [f"{k}: saved {saved[k]!r} vs this controller {mine[k]!r}" for k in mine if saved[k] != mine[k]]
        if differ:
            raise ValueError(f"controller state was saved with other settings ({', '.join(differ)}); construct the "
                             f"controller with the saved settings before loading")
        counts = {}
        for name in ("step", "skipped_updates"):
            value = state[name]
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"controller state {name!r} must be an int >= 0; got {value!r}")
            counts[name] = value
        pinned, drift = state.get("pinned", 0), state.get("drift")
        if isinstance(pinned, bool) or not isinstance(pinned, int) or not (drift is None or isinstance(drift, str)):
            raise ValueError(f"controller state 'pinned' must be an int and 'drift' a message or None; got {pinned!r}, "
                             f"{drift!r}")
        r_d = state["r_d"]
        if isinstance(r_d, bool) or not isinstance(r_d, Real) or not (math.isnan(r_d) or -1.0 <= r_d <= 1.0):
            raise ValueError("controller state 'r_d' must be a mean of signs in [-1, 1] (or NaN before any "
                             f"adjustment); got {r_d!r}")
        sums = state["sums"]
        if not isinstance(sums, torch.Tensor) or sums.shape != (3,) or sums.dtype != torch.float64:
            got = f"{sums.dtype} {tuple(sums.shape)}" if isinstance(sums, torch.Tensor) else type(sums).__name__
            raise ValueError(f"controller state 'sums' must be a float64 tensor of shape (3,); got {got}")
        total, count, nans = sums.tolist()
        if not all(math.isfinite(v) for v in (total, count, nans)) or count < 0 or nans < 0 or abs(total) > count \
                or count != int(count) or nans != int(nans):
            raise ValueError(f"controller state 'sums' must hold a finite sum of values within ±count, a whole count "
                             f"and a whole NaN count; got {sums.tolist()}")
        values = self.noise.checked_state(state["noise"])
        self.noise._assign(values)
        self.step, self.skipped_updates, self.r_d = counts["step"], counts["skipped_updates"], float(r_d)
        self.pinned, self.drift = pinned, drift
        self._sums = sums.to(self._sums.device).clone()

    def __repr__(self) -> str:
        return (f"AdaptiveController(signal={self.signal_name!r}, target={self.target:.4g}, interval={self.interval}, "
                f"kimg={self.kimg:g}, batch_size={self.batch_size}, step={self.step}, r_d={self.r_d:.4g}, "
                f"p={self.noise.p:.6g})")
