"""Checking a demo's checkpoint before anything is restored: every field against its type, its range and the run.

A checkpoint that loads safely (``weights_only=True``) can still lie: an edited or foreign file
with an iteration of 10**9 (the resumed progress bar would replay for hours), a negative count,
NaN weights, a history of the wrong length. Each check raises ``ValueError`` naming the field;
inside :func:`~diffaug_noise.checkpoint.restoring` that is one ``CheckpointError`` line, raised
before anything is restored or written.

Example:
    >>> check_count("iteration", 3, 1, 10)
    3
    >>> check_count("iteration", True, 1, 10)
    Traceback (most recent call last):
    ...
    ValueError: iteration must be an int in 1..10 (this run's); got True
    >>> logged_steps(every=4, upto=10, last=10)
    [4, 8, 10]
"""
from __future__ import annotations

import math
from numbers import Real

import torch


def check_count(name: str, value, low: int, high: int) -> int:
    """``value`` as an int in ``[low, high]`` (a bool is not a count), or ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an int in {low}..{high} (this run's); got {value!r}")
    return value


def check_number(name: str, value, low: float = -math.inf, high: float = math.inf, nan: bool = False) -> float:
    """``value`` as a finite float in ``[low, high]`` (or NaN where ``nan``), or ``ValueError``."""
    ok = not isinstance(value, bool) and isinstance(value, Real) and (
        (math.isfinite(value) and low <= value <= high) or (nan and math.isnan(value)))
    if not ok:
        raise ValueError(f"{name} must be a finite number in [{low:g}, {high:g}]{' or NaN' if nan else ''}; "
                         f"got {value!r}")
    return float(value)


def check_series(name: str, values, length: int, low: float, high: float, nan: bool = False,
                 whole: bool = False) -> None:
    """``values``: a list of ``length`` numbers in ``[low, high]`` (NaN allowed where ``nan``, ints where ``whole``)."""
    if not isinstance(values, list) or len(values) != length:
        got = f"{len(values)} entries" if isinstance(values, list) else type(values).__name__
        raise ValueError(f"{name} must be a list of {length} entries (one per logged step); got {got}")
    for i, value in enumerate(values):
        if whole:
            check_count(f"{name}[{i}]", value, int(low), int(high))
        else:
            check_number(f"{name}[{i}]", value, low, high, nan)


def check_keys(name: str, saved, keys) -> None:
    """``saved`` is a dict with exactly ``keys``."""
    if not isinstance(saved, dict) or set(saved) != set(keys):
        got = sorted(map(str, saved)) if isinstance(saved, dict) else type(saved).__name__
        raise ValueError(f"{name} must hold {sorted(map(str, keys))}; got {got}")


def check_finite(name: str, state) -> None:
    """Every floating tensor in ``state`` (nested dicts and lists) is finite."""
    if isinstance(state, dict):
        for key, value in state.items():
            check_finite(f"{name}.{key}", value)
    elif isinstance(state, (list, tuple)):
        for i, value in enumerate(state):
            check_finite(f"{name}[{i}]", value)
    elif isinstance(state, torch.Tensor) and (state.is_floating_point() or state.is_complex()):
        if not bool(torch.isfinite(state).all()):
            raise ValueError(f"{name} holds NaN or inf; the run diverged before it was saved, or the file was edited")


def check_like(name: str, saved, mine) -> None:
    """``saved`` has ``mine``'s structure: the same keys and lengths, tensors of the same shape and dtype, finite."""
    if isinstance(mine, dict):
        check_keys(name, saved, mine)
        for key in mine:
            check_like(f"{name}.{key}", saved[key], mine[key])
    elif isinstance(mine, (list, tuple)):
        if not isinstance(saved, (list, tuple)) or len(saved) != len(mine):
            raise ValueError(f"{name} must hold {len(mine)} entries; got "
                             f"{len(saved) if isinstance(saved, (list, tuple)) else type(saved).__name__}")
        for i, (s, m) in enumerate(zip(saved, mine)):
            check_like(f"{name}[{i}]", s, m)
    elif isinstance(mine, torch.Tensor):
        if not isinstance(saved, torch.Tensor) or saved.shape != mine.shape or saved.dtype != mine.dtype:
            got = f"{saved.dtype} {tuple(saved.shape)}" if isinstance(saved, torch.Tensor) else type(saved).__name__
            raise ValueError(f"{name} must be a {mine.dtype} tensor of shape {tuple(mine.shape)}; got {got}")
        check_finite(name, saved)
    elif mine is None and saved is not None:
        raise ValueError(f"{name} must be None (this run has none); got {type(saved).__name__}")


def check_optimizer(name: str, saved, optimizer: torch.optim.Optimizer) -> None:
    """``saved`` is a state of ``optimizer`` (its parameters' groups and shapes, finite numbers); torch checks less."""
    check_keys(name, saved, ("state", "param_groups"))
    mine = optimizer.state_dict()["param_groups"]
    groups = saved["param_groups"]
    if not isinstance(groups, list) or len(groups) != len(mine):
        raise ValueError(f"{name} must hold {len(mine)} parameter group(s); got {groups!r:.80}")
    shapes = {}
    for i, (group, own, params) in enumerate(zip(groups, mine, optimizer.param_groups)):
        check_keys(f"{name}.param_groups[{i}]", group, own)
        if group["params"] != own["params"]:
            raise ValueError(f"{name}.param_groups[{i}] holds other parameters")
        shapes.update(zip(own["params"], (p.shape for p in params["params"])))
        for key, value in group.items():
            if key == "lr":  # the one setting a loop changes (DDGAN's cosine schedule)
                check_number(f"{name}.param_groups[{i}].lr", value, 0.0)
            elif key != "params" and value != own[key]:  # eps, betas, maximize, ...: fixed by the run's settings
                raise ValueError(f"{name}.param_groups[{i}].{key} must be {own[key]!r} (this run's); got {value!r}")
    state = saved["state"]
    if not isinstance(state, dict) or not set(state) <= set(shapes):
        raise ValueError(f"{name}.state must be keyed by the parameters' indices 0..{len(shapes) - 1}")
    for index, entries in state.items():
        if not isinstance(entries, dict):
            raise ValueError(f"{name}.state[{index}] must be a dict; got {type(entries).__name__}")
        for key, value in entries.items():
            where = f"{name}.state[{index}].{key}"
            if not isinstance(value, torch.Tensor) or value.shape not in (torch.Size(), shapes[index]):
                got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                raise ValueError(f"{where} must be a scalar or a tensor of its parameter's shape "
                                 f"{tuple(shapes[index])}; got {got}")
            check_finite(where, value)
            if key == "step" and value.numel() == 1 and not (float(value) >= 0 and float(value) == int(value)):
                raise ValueError(f"{where} must be a whole number >= 0; got {float(value)!r}")


def check_members(saved: dict, G, D, opt_g, opt_d, generators: list) -> None:
    """Check what :func:`restore_members` restores (the noises and controllers check their own states on loading)."""
    check_like("G", saved["G"], G.state_dict())
    check_like("D", saved["D"], D.state_dict())
    check_optimizer("opt_g", saved["opt_g"], opt_g)
    check_optimizer("opt_d", saved["opt_d"], opt_d)
    if not isinstance(saved["data_gens"], list) or not isinstance(saved["noise_gens"], list):
        raise ValueError("data_gens and noise_gens must be lists of generator states")
    check_like("generators", saved["data_gens"] + saved["noise_gens"], [g.get_state() for g in generators])


def logged_steps(every: int, upto: int, last: int) -> list[int]:
    """The steps ``1..upto`` at which a loop of ``last`` steps that logs every ``every`` steps (and at the end) logs."""
    return list(range(every, upto + 1, every)) + ([last] if upto == last and last % every else [])
