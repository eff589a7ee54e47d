"""DiffusionNoise: the forward diffusion applied to real and fake samples before D."""
from __future__ import annotations

import math
from numbers import Real

import torch
from torch import nn

from .presets import preset_kwargs
from .schedules import beta_schedule, diffusion_tables
from .settings import DEFAULTS, check
from .timesteps import CLEAN_RULES, projected_gan_clean_prob, timestep_law


def _check_unit_interval(name: str, value, fix: str) -> float:
    """Return ``value`` as a float in [0, 1], or raise naming it and the allowed range."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or value.is_meta:
            raise ValueError(f"{name} must be a scalar with a value; got a {'meta ' if value.is_meta else ''}tensor of "
                             f"shape {tuple(value.shape)}")
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number in [0, 1]; got {type(value).__name__} {value!r}")
    value = float(value)
    if not (0.0 <= value <= 1.0):  # also rejects NaN
        raise ValueError(f"{name} must lie in [0, 1]; got {value!r}. {fix}")
    return value


def _drawn_by(generator: torch.Generator | None) -> dict:
    """``torch.rand``'s keyword for ``generator``; none for the default one, since the overload taking a generator
    accepts no symbolic sizes (``torch.compile(dynamic=True)`` fails on it)."""
    return {} if generator is None else {"generator": generator}


class DiffusionNoise(nn.Module):
    r"""Adaptive forward diffusion: ``y = sqrt(abar_t) x + sqrt(1 - abar_t) sigma eps``.

    For each sample (or, with ``per_channel``, each sample and channel) a timestep ``t`` is drawn
    from a law over ``0..T`` (see :meth:`t_distribution`), ``eps ~ N(0, I)``, and

    .. math::
        y = \sqrt{\bar\alpha_t}\, x + \sqrt{1-\bar\alpha_t}\,\sigma\,\epsilon,
        \qquad \bar\alpha_t = \prod_{s\le t} (1-\beta_s),\ \bar\alpha_0 = 1,

    with the betas of ``schedule`` rebuilt for the current ``T``. The strength ``p`` in ``[0, 1]``
    sets ``T = t_min + round(p (t_max - t_min))`` (Python's round, half to even); it is the knob
    that :class:`~diffaug_noise.AdaptiveController` turns. ``x`` may have any shape ``[B, ...]``
    and any float dtype; gradients flow to ``x`` (``dy/dx = sqrt(abar_t)``).

    Drawing ``(t, eps)`` is separate from applying them, so a transform replays exactly:
    ``noise.apply_transform(x, *noise.generate_parameters(x, generator=g))`` equals ``noise(x, generator=g')`` for two
    generators in the same state (on CUDA with ``fused=True`` the forward draws ``eps`` inside its
    kernel instead, from another stream of the same law). Tables and the law of ``t`` are float64 buffers on the
    module's device; the forward pass makes no host round-trip. ``p``, ``T`` and the tables are buffers too,
    so ``state_dict()``, pickling and upstream loops that copy buffers restore them exactly.

    Args:
        schedule: beta schedule, one of ``linear, quad, const, jsd, sigmoid, cosine, continuous_t``.
        beta_start: first beta of the schedule, in (0, 1).
        beta_end: last beta of the schedule, in (0, 1).
        t_min: smallest ``T`` (at ``p = 0``), >= 1.
        t_max: largest ``T`` (at ``p = 1``), >= ``t_min``.
        sigma: standard deviation of the added noise, > 0, in the units of ``x``.
        t_dist: ``"priority"`` (``P(t) ∝ t - priority_offset`` over ``1..T``) or ``"uniform"``.
        clean_prob: share of samples left clean (``t = 0``), in [0, 1].
        p: initial strength in [0, 1].
        priority_offset: 0 for the paper's ``P(t) ∝ t``; 1 for the official code's weights ``t - 1``.
        clean_rule: ``"fixed"`` (use ``clean_prob``) or ``"projected_gan"``
            (``P(t=0) = 1 - min(round(64 p), 48)/64``, the official projected-gan fork).
        per_channel: draw ``t`` per sample *and channel* (``t`` has shape ``[B, C]``), as the
            projected-gan fork does on feature maps.
        fused: on CUDA, draw ``eps`` inside one Triton kernel that also gathers the coefficients
            and combines (one read of ``x``, one write of ``y``; :mod:`diffaug_noise.fused`). The law
            of ``(t, y)`` is the same; the random stream differs from the unfused path, so set it to
            ``False`` where a CUDA forward must replay ``apply_transform(x, *sample(x))`` bitwise.
            Float64 or non-contiguous ``x``, CPU tensors and installs without Triton always take the
            unfused path. Not part of :meth:`config`.
        check_finite: raise ``ValueError`` when ``x`` holds NaN or Inf instead of passing them on.
            Costs one extra read of ``x`` and a host sync per call, so it is off by default (a
            non-finite ``x`` then gives a non-finite ``y`` at the same places). Not part of :meth:`config`.

    Example:
        >>> import torch
        >>> noise = DiffusionNoise(t_min=10, t_max=1000, sigma=0.05)
        >>> y, t = noise(torch.zeros(8, 3, 16, 16))
        >>> y.shape, t.shape, t.dtype, noise.T
        (torch.Size([8, 3, 16, 16]), torch.Size([8]), torch.int64, 10)
        >>> noise.p = 0.5
        >>> noise.T
        505
    """

    # Buffers whose dtype is part of their meaning; Module.half()/.to(dtype) must not cast them.
    _BUFFER_DTYPES = {
        "p_value": torch.float64,
        "sqrt_abar": torch.float64,
        "sqrt_one_minus_abar": torch.float64,
        "t_cdf": torch.float64,
        "coefficients32": torch.float32,
        "coefficients64": torch.float64,
    }

    def __init__(
        self,
        schedule: str = DEFAULTS["schedule"],
        beta_start: float = DEFAULTS["beta_start"],
        beta_end: float = DEFAULTS["beta_end"],
        t_min: int = DEFAULTS["t_min"],
        t_max: int = DEFAULTS["t_max"],
        sigma: float = DEFAULTS["sigma"],
        t_dist: str = DEFAULTS["t_dist"],
        clean_prob: float = DEFAULTS["clean_prob"],
        p: float = 0.0,
        priority_offset: int = 0,
        clean_rule: str = "fixed",
        per_channel: bool = False,
        fused: bool = True,
        check_finite: bool = False,
    ):
        super().__init__()
        self.check_config(schedule=schedule, beta_start=beta_start, beta_end=beta_end, t_min=t_min, t_max=t_max,
                          sigma=sigma, t_dist=t_dist, clean_prob=clean_prob, priority_offset=priority_offset,
                          clean_rule=clean_rule)
        self.schedule = schedule
        self.beta_start = float(beta_start)
        self.beta_end = float(beta_end)
        self.t_min = t_min
        self.t_max = t_max
        self.sigma = float(sigma)
        self.t_dist = t_dist
        self.clean_prob = float(clean_prob)
        self.priority_offset = priority_offset
        self.clean_rule = clean_rule
        self.per_channel = bool(per_channel)
        self.fused = bool(fused)
        self.check_finite = bool(check_finite)
        beta_schedule(schedule, 1, self.beta_start, self.beta_end)  # validates the beta range early

        f64 = torch.float64
        self.register_buffer("p_value", torch.zeros((), dtype=f64))
        self.register_buffer("T_value", torch.tensor(t_min, dtype=torch.int64))
        self.register_buffer("sqrt_abar", torch.ones(t_max + 1, dtype=f64))
        self.register_buffer("sqrt_one_minus_abar", torch.zeros(t_max + 1, dtype=f64))
        self.register_buffer("t_cdf", torch.ones(t_max + 1, dtype=f64))
        # [sqrt(abar_t), sigma * sqrt(1 - abar_t)] per t, gathered in one go by the forward pass.
        # Derived from the tables above but saved with them, so any restore (load_state_dict, an
        # upstream loop copying buffers) leaves them consistent with p.
        self.register_buffer("coefficients32", torch.zeros(2, t_max + 1, dtype=torch.float32))
        self.register_buffer("coefficients64", torch.zeros(2, t_max + 1, dtype=f64))
        self.p = p

    # ------------------------------------------------------------------ construction helpers

    @staticmethod
    def check_config(schedule=DEFAULTS["schedule"], beta_start=DEFAULTS["beta_start"], beta_end=DEFAULTS["beta_end"],
                     t_min=DEFAULTS["t_min"], t_max=DEFAULTS["t_max"], sigma=DEFAULTS["sigma"],
                     t_dist=DEFAULTS["t_dist"], clean_prob=DEFAULTS["clean_prob"], priority_offset=0,
                     clean_rule="fixed", **_ignored) -> None:
        """Check constructor arguments as the constructor does, building nothing (settings objects validate with it).

        Example:
            >>> DiffusionNoise.check_config(t_min=20, t_max=10)
            Traceback (most recent call last):
            ...
            ValueError: t_min must be <= t_max; got t_min=20, t_max=10
        """
        for name, value in (("schedule", schedule), ("beta_start", beta_start), ("beta_end", beta_end),
                            ("t_min", t_min), ("t_max", t_max), ("sigma", sigma), ("t_dist", t_dist),
                            ("clean_prob", clean_prob)):
            check(name, value)  # the catalogue's rules: the same as every command's --name
        if t_min > t_max:
            raise ValueError(f"t_min must be <= t_max; got t_min={t_min}, t_max={t_max}")
        if clean_rule not in CLEAN_RULES:
            raise ValueError(f"unknown clean_rule {clean_rule!r}; choose one of {', '.join(CLEAN_RULES)}")
        if priority_offset not in (0, 1):
            raise ValueError(f"priority_offset must be 0 (paper) or 1 (official code); got {priority_offset!r}")
        if t_dist == "priority" and t_min <= priority_offset:
            raise ValueError(
                f"t_min must be >= {priority_offset + 1} with priority_offset={priority_offset} "
                f"(weights t - {priority_offset} vanish at T = {t_min}); got t_min={t_min}"
            )

    @classmethod
    def preset(cls, name: str, **overrides) -> "DiffusionNoise":
        """Build the noise of a named preset (``paper``, ``stylegan2``, ``insgen``, ``projected_gan``).

        Example:
            >>> DiffusionNoise.preset("projected_gan", p=0.5).t_distribution()[0].item()
            0.5
        """
        return cls(**preset_kwargs(name, "noise", **overrides))

    def config(self) -> dict:
        """The constructor arguments except ``p`` (which is state)."""
        return dict(
            schedule=self.schedule, beta_start=self.beta_start, beta_end=self.beta_end,
            t_min=self.t_min, t_max=self.t_max, sigma=self.sigma, t_dist=self.t_dist,
            clean_prob=self.clean_prob, priority_offset=self.priority_offset,
            clean_rule=self.clean_rule, per_channel=self.per_channel,
        )

    # ------------------------------------------------------------------ strength and tables

    @property
    def p(self) -> float:
        """Strength in [0, 1]; setting it rebuilds ``T``, the tables and the law of ``t``."""
        return float(self.p_value)

    @p.setter
    def p(self, value) -> None:
        self._rebuild(_check_unit_interval("p", value, "Clip the strength to [0, 1] before setting it."))

    @property
    def T(self) -> int:
        """Current maximum timestep: ``t_min + round(p * (t_max - t_min))``."""
        return int(self.T_value)

    def current_clean_prob(self, p: float | None = None) -> float:
        """``P(t = 0)`` at strength ``p`` (default: the current one)."""
        p = self.p if p is None else _check_unit_interval("p", p, "Pass a strength in [0, 1].")
        return projected_gan_clean_prob(p) if self.clean_rule == "projected_gan" else self.clean_prob

    def _T_for(self, p: float) -> int:
        return self.t_min + round(p * (self.t_max - self.t_min))

    def _tables_for(self, p: float) -> dict:
        """Every buffer's value at strength ``p`` (on the CPU), computed without touching the module."""
        T = self._T_for(p)
        betas = beta_schedule(self.schedule, T, self.beta_start, self.beta_end)
        sqrt_abar, sqrt_one_minus_abar = diffusion_tables(betas)
        cdf = torch.cumsum(timestep_law(T, self.t_dist, self.current_clean_prob(p), self.priority_offset), dim=0)
        cdf[-1] = 1.0  # so a uniform draw u < 1 never lands past T, whatever the rounding
        pad = self.t_max - T  # entries past T are never drawn; they repeat the last value
        sqrt_abar = torch.cat([sqrt_abar, sqrt_abar[-1:].expand(pad)])
        sqrt_one_minus_abar = torch.cat([sqrt_one_minus_abar, sqrt_one_minus_abar[-1:].expand(pad)])
        coefficients64 = torch.stack([sqrt_abar, sqrt_one_minus_abar * self.sigma])
        return {"p_value": torch.tensor(p, dtype=torch.float64), "T_value": torch.tensor(T, dtype=torch.int64),
                "sqrt_abar": sqrt_abar, "sqrt_one_minus_abar": sqrt_one_minus_abar,
                "t_cdf": torch.cat([cdf, cdf.new_ones(pad)]),
                "coefficients32": coefficients64.float(), "coefficients64": coefficients64}

    def _rebuild(self, p: float) -> None:
        self._assign(self._tables_for(p))

    def _assign(self, values: dict) -> None:
        with torch.no_grad():
            for name, value in values.items():
                getattr(self, name).copy_(value)

    def t_distribution(self) -> torch.Tensor:
        """The exact float64 law of ``t`` over ``0..T`` under the current settings (on the CPU).

        Example:
            >>> law = DiffusionNoise(t_min=4, t_max=4).t_distribution()
            >>> [round(v, 3) for v in law.tolist()]
            [0.0, 0.1, 0.2, 0.3, 0.4]
        """
        return timestep_law(self.T, self.t_dist, self.current_clean_prob(), self.priority_offset)

    def _apply(self, fn, recurse=True):
        # Module.half()/.to(dtype) would cast the float64 tables and p; keep them float64 and rebuild
        # them exactly from p on the new device instead.
        p = float(self.p_value)
        super()._apply(fn, recurse)
        if any(getattr(self, name).dtype != dtype for name, dtype in self._BUFFER_DTYPES.items()):
            for name, dtype in self._BUFFER_DTYPES.items():
                setattr(self, name, getattr(self, name).to(dtype))
            self._rebuild(p)
        return self

    # ------------------------------------------------------------------ state

    def get_extra_state(self) -> dict:
        return {"config": self.config()}

    def set_extra_state(self, state: dict) -> None:
        self._check_config(state)  # reached only through _load_from_state_dict, after every check passed

    def _check_config(self, extra) -> None:
        saved = extra.get("config", {}) if isinstance(extra, dict) else {}
        mine = self.config()
        diff = {k: (saved.get(k), mine.get(k)) for k in set(saved) | set(mine) if saved.get(k) != mine.get(k)}
        if diff:
            details = ", ".join(f"{k}: saved {s!r} vs this module {m!r}" for k, (s, m) in sorted(diff.items()))
            raise ValueError(f"state_dict was saved from a DiffusionNoise with other settings ({details}); "
                             f"construct the module with the saved settings before loading")

    def checked_state(self, state: dict, prefix: str = "") -> dict:
        """The buffers ``state`` (a :meth:`state_dict`) would load, after checking all of it; raises ``ValueError``.

        Checked before anything changes: the settings it was saved with equal this module's, every
        buffer is there with its shape and dtype, ``p`` is finite and in [0, 1], ``T`` is the one ``p``
        gives, and the tables and the law of ``t`` are finite and the ones ``p`` gives (to rounding).
        """
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict from DiffusionNoise.state_dict(); got {type(state).__name__}")
        names = list(self._BUFFER_DTYPES) + ["T_value"]
        missing = [prefix + n for n in names + ["_extra_state"] if prefix + n not in state]
        if missing:
            raise ValueError(f"DiffusionNoise state is missing {missing}; was it saved by DiffusionNoise.state_dict()?")
        self._check_config(state[prefix + "_extra_state"])
        values = {}
        for name in names:
            value, mine = state[prefix + name], getattr(self, name)
            if not isinstance(value, torch.Tensor) or value.shape != mine.shape or value.dtype != mine.dtype:
                got = f"{value.dtype} {tuple(value.shape)}" if isinstance(value, torch.Tensor) else type(value).__name__
                raise ValueError(f"DiffusionNoise state {name!r} must be a {mine.dtype} tensor of shape "
                                 f"{tuple(mine.shape)}; got {got}")
            values[name] = value.detach().cpu()
        p = float(values["p_value"])
        if not (0.0 <= p <= 1.0):  # also NaN
            raise ValueError(f"DiffusionNoise state holds p = {p!r}, outside [0, 1]; the file is damaged or not one of "
                             "ours")
        expected = self._tables_for(p)
        if int(values["T_value"]) != int(expected["T_value"]):
            raise ValueError(f"DiffusionNoise state holds T = {int(values['T_value'])}, but its p = {p!r} gives "
                             f"T = {int(expected['T_value'])}; the file is damaged or was edited")
        for name in ("sqrt_abar", "sqrt_one_minus_abar", "t_cdf", "coefficients32", "coefficients64"):
            if not bool(torch.isfinite(values[name]).all()) or not torch.allclose(
                    values[name].double(), expected[name].double(), rtol=1e-6, atol=1e-9):
                raise ValueError(f"DiffusionNoise state's {name!r} is not the table its p = {p!r} gives (non-finite or "
                                 f"other values); the file is damaged or was edited")
        return values

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        # All or nothing: torch's default copies the buffers one by one and calls set_extra_state last,
        # so a rejected state would leave another run's p behind. Everything is checked first here.
        values = self.checked_state(state_dict, prefix)
        self._assign(values)
        known = {prefix + n for n in values} | {prefix + "_extra_state"}
        if strict:
            unexpected_keys.extend(k for k in state_dict if k.startswith(prefix) and k not in known
                                   and "." not in k[len(prefix):])

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """torch's ``load_state_dict``, all or nothing: with ``strict``, a key this module lacks is a ``ValueError``
        before anything changes (torch would raise only after loading the rest).

        Loaded as part of a parent module, the parent's ``strict`` follows torch: the noise's own
        state is still checked whole before it changes (:meth:`checked_state`).
        """
        if strict and isinstance(state_dict, dict):
            known = set(self._BUFFER_DTYPES) | {"T_value", "_extra_state"}
            unexpected = sorted(k for k in state_dict if k not in known)
            if unexpected:
                raise ValueError(f"DiffusionNoise state has unexpected key(s) {unexpected}; remove them, or load "
                                 "with strict=False to ignore them")
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    # ------------------------------------------------------------------ sampling and applying

    def _check_x(self, x, name: str = "x") -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor; got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"{name} must have a floating dtype; got {x.dtype}. Convert it first, e.g. {name}.float()")
        if x.ndim < 1:
            raise ValueError(f"{name} must have a batch dimension; got shape {tuple(x.shape)}")
        if self.per_channel and x.ndim < 2:
            raise ValueError(f"per_channel noise needs {name} of shape [B, C, ...]; got shape {tuple(x.shape)}")
        if self.check_finite:
            bad = int((~torch.isfinite(x)).sum())
            if bad:
                raise ValueError(f"{name} holds {bad} NaN/Inf value(s) of {x.numel()}; fix the upstream computation "
                                 f"(or construct the noise with check_finite=False to pass them through)")
        if x.device != self.sqrt_abar.device:
            raise ValueError(f"{name} is on {x.device} but the noise tables are on {self.sqrt_abar.device}; "
                             f"call noise.to({str(x.device)!r}) once")

    def _t_shape(self, x: torch.Tensor) -> tuple[int, ...]:
        return tuple(x.shape[:2]) if self.per_channel else (x.shape[0],)

    def sample_t(self, shape, device=None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw int64 timesteps of ``shape`` (an int batch size or a tuple) from :meth:`t_distribution`.

        Inverse-CDF sampling on the device: ``t = #{k : cdf_k <= u}``, ``u ~ U[0, 1)``; no host sync.
        """
        shape = (shape,) if isinstance(shape, int) and not isinstance(shape, bool) else shape
        if not isinstance(shape, (tuple, list, torch.Size)) or not all(
                isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
            raise ValueError(f"shape must be a batch size or a tuple of sizes, each an int >= 0; got {shape!r}")
        shape = tuple(shape)
        device = self.t_cdf.device if device is None else torch.device(device)
        return self._t_from_uniform(torch.rand(shape, dtype=torch.float64, device=device, **_drawn_by(generator)))

    def _t_from_uniform(self, u: torch.Tensor) -> torch.Tensor:
        """The inverse CDF of the law of ``t``: ``t = #{k : cdf_k <= u}`` for float64 ``u`` in [0, 1)."""
        return torch.searchsorted(self.t_cdf.to(u.device), u, right=True)

    def generate_parameters(self, x: torch.Tensor,
                            generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``(t, eps)`` for a batch like ``x``: ``t`` int64 ``[B]`` (``[B, C]`` per channel), ``eps`` like
        ``x`` (kornia's name for the draw that :meth:`apply_transform` replays)."""
        self._check_x(x)
        t = self.sample_t(self._t_shape(x), x.device, generator)
        eps = torch.empty_like(x).normal_(generator=generator)
        return t, eps

    sample = generate_parameters  # its name before 0.2, kept for users' code

    def _coefficients(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        table = self.coefficients64 if x.dtype == torch.float64 else self.coefficients32
        coefficients = table[:, t].to(x.dtype).view((2,) + t.shape + (1,) * (x.ndim - t.ndim))
        return coefficients[0], coefficients[1]

    def apply_transform(self, x: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, *,
                        check_t: bool = True) -> torch.Tensor:
        """Pure transform: ``sqrt(abar_t) x + sqrt(1 - abar_t) sigma eps`` for given ``t`` and ``eps``.

        ``t`` must lie in ``0..T`` (the current ``T``): the tables hold the diffusion up to ``T`` and
        repeat its last value beyond, so a larger ``t`` would silently get ``T``'s noise and a
        negative one the last entry's. Checking costs one host sync; ``check_t=False`` skips it for
        a ``t`` drawn by :meth:`sample_t` on the hot path (the adapters do).

        Example:
            >>> noise = DiffusionNoise(t_min=5, t_max=5)
            >>> x = torch.ones(2, 3)
            >>> t, eps = noise.generate_parameters(x, generator=torch.Generator().manual_seed(0))
            >>> torch.equal(noise.apply_transform(x, t, eps), noise.apply_transform(x, t, eps))
            True
        """
        self._check_x(x)
        expected = self._t_shape(x)
        if not isinstance(t, torch.Tensor) or t.dtype != torch.int64 or tuple(t.shape) != expected:
            got = f"{t.dtype} {tuple(t.shape)}" if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"t must be an int64 tensor of shape {expected} for x of shape {tuple(x.shape)}; "
                             f"got {got}")
        if not isinstance(eps, torch.Tensor) or eps.shape != x.shape:
            got = tuple(eps.shape) if isinstance(eps, torch.Tensor) else type(eps).__name__
            raise ValueError(f"eps must be a tensor of x's shape {tuple(x.shape)}; got {got}")
        if not eps.is_floating_point():
            raise TypeError(f"eps must be real floating noise; got dtype {eps.dtype}")
        for name, value in (("t", t), ("eps", eps)):
            if value.device != x.device:
                raise ValueError(f"{name} is on {value.device} but x on {x.device}; pass them on one device")
        if check_t and t.numel():
            low, high = torch.stack(torch.aminmax(t)).tolist()
            if low < 0 or high > self.T:
                raise ValueError(f"t must lie in 0..{self.T} (the current T); got values from {low} to {high}. Draw "
                                 "it with sample_t() or sample()")
        return self._transform(x, t, eps)

    def _transform(self, x: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        scale, noise_scale = self._coefficients(x, t)
        return (eps.to(x.dtype) * noise_scale).addcmul_(x, scale)

    def pair(self, real: torch.Tensor, fake: torch.Tensor, share_eps: bool = False,
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Noise a real and a fake that D compares at the same ``t``: returns ``(y_real, y_fake, t)``.

        Sample ``i`` of both gets the same timestep (a relativistic D then compares them at one noise
        level, which is what its loss means); ``share_eps`` gives them the same ``eps`` too, so they
        differ only by ``sqrt(abar_t) (real - fake)``. Gradients flow to both inputs.

        Example:
            >>> noise = DiffusionNoise(t_min=50, t_max=50)
            >>> real, fake = torch.ones(4, 3), torch.zeros(4, 3)
            >>> y_real, y_fake, t = noise.pair(real, fake, share_eps=True)
            >>> a = noise.sqrt_abar[t].float().view(-1, 1)
            >>> torch.allclose(y_real - y_fake, a * (real - fake))
            True
        """
        self._check_x(real, "real")  # both checked before anything is drawn from the generator
        self._check_x(fake, "fake")
        if fake.shape != real.shape:
            raise ValueError(f"real and fake of a pair must be tensors of one shape; got {tuple(real.shape)} and "
                             f"{tuple(fake.shape)}")
        t, eps = self.generate_parameters(real, generator)
        fake_eps = eps if share_eps else torch.empty_like(fake).normal_(generator=generator)
        return self._transform(real, t, eps), self._transform(fake, t, fake_eps), t

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Noise ``x``: returns ``(y, t)`` with ``y`` like ``x`` and ``t`` int64 on ``x.device``."""
        if self.fused and isinstance(x, torch.Tensor) and x.is_cuda:
            from . import fused as fused_kernel  # imports Triton: only when a CUDA tensor arrives

            if fused_kernel.supports(x):
                self._check_x(x)
                t_shape = self._t_shape(x)
                # One draw for the t of every sample and, last, the kernel's 64-bit seed (two uniforms): one launch
                # fewer.
                u = torch.rand(math.prod(t_shape) + 2, dtype=torch.float64, device=x.device, **_drawn_by(generator))
                t = self._t_from_uniform(u[:-2]).view(t_shape)
                return fused_kernel.fused_forward(x, t, self.coefficients32, math.prod(x.shape[t.ndim:]), u[-2:]), t
        t, eps = self.generate_parameters(x, generator)
        scale, noise_scale = self._coefficients(x, t)
        # In place on the fresh eps: one buffer, the same arithmetic as apply_transform() (so replays match bitwise).
        return eps.mul_(noise_scale).addcmul_(x, scale), t

    def extra_repr(self) -> str:
        cfg = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{cfg}, p={self.p:.6g}, T={self.T}"
