"""Timestep conditioning: embedding and projection head against independent formulas."""

import numpy as np
import pytest
import torch

import diffaug_noise as dn


def test_sinusoidal_embedding_matches_formula():
    emb = dn.TimestepEmbedding(dim=8, max_period=100.0, mlp=False)
    t = torch.tensor([0, 3, 250])
    half = 4
    freqs = np.array([100.0 ** (-j / half) for j in range(half)])
    want = np.concatenate([np.cos(np.outer(t.numpy(), freqs)), np.sin(np.outer(t.numpy(), freqs))], axis=1)
    np.testing.assert_allclose(emb(t).numpy(), want, rtol=1e-5, atol=1e-5)


def test_projection_head_is_linear_plus_inner_product():
    torch.manual_seed(0)
    head = dn.TimestepProjectionHead(feature_dim=6, embed_dim=4)
    h, t = torch.randn(5, 6, dtype=torch.float64), torch.tensor([0, 1, 2, 50, 999])
    head = head.double()
    e = head.embedding(t)
    w, b, V = head.linear.weight[0], head.linear.bias[0], head.projection.weight  # V: [6, 4]
    want = torch.stack([w @ h[i] + b + (V @ e[i]) @ h[i] for i in range(5)]).unsqueeze(1)
    torch.testing.assert_close(head(h, t), want, rtol=1e-12, atol=1e-12)


def test_conditioned_discriminator_depends_on_t_and_trains_the_embedding():
    torch.manual_seed(0)
    D = dn.TimestepConditionedDiscriminator(torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.ReLU()),
                                            feature_dim=16, embed_dim=8)
    y = torch.randn(1, 2).expand(4, 2)
    out = D(y, torch.tensor([0, 10, 100, 1000]))
    assert out.shape == (4, 1) and len(set(out.flatten().tolist())) == 4
    out.sum().backward()
    assert D.head.embedding.mlp[0].weight.grad.abs().sum() > 0


def test_label_concatenation_and_errors():
    label = dn.TimestepLabel(dn.TimestepEmbedding(dim=4, mlp=False))
    out = label(torch.ones(3, 2), torch.tensor([0, 0, 0]))
    assert out.tolist() == [[1.0, 1.0, 1.0, 1.0, 0.0, 0.0]] * 3  # cos(0) = 1, sin(0) = 0
    with pytest.raises(ValueError, match="c and t must share the batch size"):
        label(torch.ones(2, 2), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="dim must be an even int >= 2; got 7"):
        dn.TimestepEmbedding(dim=7)
    with pytest.raises(ValueError, match=r"t must have shape \[B\] = \[4\]; got \(3,\)"):
        dn.TimestepProjectionHead(4, 4)(torch.ones(4, 4), torch.tensor([1, 2, 3]))
