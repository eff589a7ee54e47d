"""K independent networks evaluated as one batched network: MLPs (one matmul per layer for all K), or any network."""
from __future__ import annotations

import copy
import math

import torch
from torch import nn


class EnsembleMLP(nn.Module):
    """``K`` MLPs with the same layer sizes; input ``[K, B, in]``, output ``[K, B, out]``.

    Member ``k`` is initialised like ``nn.Linear`` (uniform in ``±1/sqrt(fan_in)``) from its own
    seed, so two ensembles that give a member the same seed start it from the same weights.
    Training all members together is exactly training them apart: the loss is a sum over members
    and Adam is elementwise.

    Args:
        seeds: one initialisation seed per member.
        sizes: layer widths, input first, output last.
        activation: applied between layers (not after the last one).

    Example:
        >>> net = EnsembleMLP(seeds=[0, 0, 1], sizes=[2, 16, 1])
        >>> out = net(torch.ones(3, 5, 2))
        >>> out.shape, torch.equal(out[0], out[1]), torch.equal(out[0], out[2])
        (torch.Size([3, 5, 1]), True, False)
    """

    def __init__(
        self,
        seeds: list[int],
        sizes: list[int],
        activation=torch.relu,
    ):
        super().__init__()
        weights, biases = [[] for _ in sizes[1:]], [[] for _ in sizes[1:]]
        for seed in seeds:
            gen = torch.Generator().manual_seed(seed)
            for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
                bound = 1 / math.sqrt(fan_in)
                weights[i].append((torch.rand(fan_in, fan_out, generator=gen) * 2 - 1) * bound)
                biases[i].append((torch.rand(1, fan_out, generator=gen) * 2 - 1) * bound)
        shapes = list(zip(sizes[:-1], sizes[1:]))  # zero members: empty [0, ...] tensors, a no-op network
        self.weights = nn.ParameterList(nn.Parameter(torch.stack(w) if w else torch.empty(0, i, o))
                                        for w, (i, o) in zip(weights, shapes))
        self.biases = nn.ParameterList(nn.Parameter(torch.stack(b) if b else torch.empty(0, 1, o))
                                       for b, (_, o) in zip(biases, shapes))
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            x = torch.baddbmm(b, x, w)
            if i < last:
                x = self.activation(x)
        return x


class StackedEnsemble(nn.Module):
    """``K`` copies of one network as one module: ``[K, B, ...]`` in, ``[K, B, ...]`` out, one vmapped pass.

    Member ``k``'s parameters are slice ``k`` of each stacked parameter (``torch.func.stack_module_state``);
    the forward is ``torch.func.vmap`` of ``torch.func.functional_call`` over the members, so any
    network (convolutions, the library's conditioning modules) trains as ``K`` independent runs in one
    pass, as :class:`EnsembleMLP` does for MLPs. The members must not update buffers in their forward
    (BatchNorm with ``track_running_stats=False``).

    Args:
        members: the ``K`` networks, of one architecture, each already initialised as its run wants.

    Example:
        >>> nets = [nn.Linear(3, 2) for _ in range(4)]
        >>> ensemble = StackedEnsemble(nets)
        >>> x = torch.randn(4, 5, 3)
        >>> torch.allclose(ensemble(x)[2], nets[2](x[2]))
        True
    """

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        params, buffers = torch.func.stack_module_state(members)
        self._template = [copy.deepcopy(members[0]).to("meta")]  # a list: not a submodule, holds no state
        self._names = {name.replace(".", "__"): name for name in [*params, *buffers]}  # ParameterDict keys: no dots
        self.params = nn.ParameterDict({key: nn.Parameter(params[name].detach().clone())
                                        for key, name in self._names.items() if name in params})
        for key, name in self._names.items():
            if name in buffers:
                self.register_buffer(key, buffers[name].clone())

    def _state(self) -> dict:
        return {name: (self.params[key] if key in self.params else getattr(self, key))
                for key, name in self._names.items()}

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        def one(state, *member_inputs):
            return torch.func.functional_call(self._template[0], state, member_inputs)
        return torch.func.vmap(one)(self._state(), *inputs)
