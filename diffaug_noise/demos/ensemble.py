"""K independent MLPs evaluated as one batched network (one matmul per layer for all K)."""
from __future__ import annotations

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
