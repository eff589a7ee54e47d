"""Classifier guidance against closed forms: Gaussian classes (exact log-probability gradient), AdaGN, the DDPM
chain."""
import json
import math

import pytest
import torch
from click.testing import CliRunner

import diffaug_noise as dn
from diffaug_noise.guidance import (
    AncestralChain,
    classifier_gradient,
    condition_eps,
    condition_mean,
    noisy_classifier_loss,
)

MEANS = torch.tensor([[2.0, 0.0], [-1.0, 1.0], [0.0, -2.0]], dtype=torch.float64)
SIGMA = 0.7


def gaussian_classifier(x, t):
    """Logits of equal-prior Gaussian classes N(mu_k, SIGMA^2 I): log p(x | k) up to a shared constant."""
    return -((x[:, None, :] - MEANS) ** 2).sum(-1) / (2 * SIGMA ** 2)


def test_classifier_gradient_is_the_exact_gradient_of_log_p_y_given_x():
    x = torch.randn(50, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 2
    y = torch.randint(0, 3, (50,), generator=torch.Generator().manual_seed(1))
    got = classifier_gradient(gaussian_classifier, x, torch.zeros(50, dtype=torch.long), y, scale=3.0)
    # d/dx log p(y|x) = (mu_y - sum_k p(k|x) mu_k) / sigma^2, computed here without autograd
    expected = torch.empty_like(x)
    for i in range(50):
        logits = [-(((x[i] - MEANS[k]) ** 2).sum().item()) / (2 * SIGMA ** 2) for k in range(3)]
        top = max(logits)
        weights = [math.exp(v - top) for v in logits]
        posterior = [w / sum(weights) for w in weights]
        mean_mu = sum(posterior[k] * MEANS[k] for k in range(3))
        expected[i] = 3.0 * (MEANS[y[i]] - mean_mu) / SIGMA ** 2
    torch.testing.assert_close(got, expected)
    assert not got.requires_grad


def test_classifier_gradient_leaves_no_graph_and_no_parameter_gradients():
    net = torch.nn.Linear(2, 3)
    x = torch.randn(4, 2, requires_grad=True)
    g = classifier_gradient(lambda x, t: net(x), x, torch.zeros(4, dtype=torch.long), torch.tensor([0, 1, 2, 0]))
    assert g.grad_fn is None and net.weight.grad is None and x.grad is None
    probs = torch.softmax(net(x), 1).detach()
    expected = net.weight.detach()[[0, 1, 2, 0]] - probs @ net.weight.detach()  # linear logits: W_y - E_p[W]
    torch.testing.assert_close(g, expected)


def test_condition_mean_and_eps_are_the_papers_shifts():
    mean, var, eps = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.25]]), torch.tensor([[0.5, -0.5]])
    g = torch.tensor([[4.0, -8.0]])
    torch.testing.assert_close(condition_mean(mean, var, g), torch.tensor([[2.0, 0.0]]))
    torch.testing.assert_close(condition_eps(eps, torch.tensor([[0.5]]), g), torch.tensor([[-1.5, 3.5]]))


def test_ddim_and_ancestral_guidance_agree_on_the_implied_x0_shift():
    """eps - sqrt(1-abar) g moves x0_hat = (x_t - sqrt(1-abar) eps)/sqrt(abar) by (1-abar)/sqrt(abar) g: the score
    shift."""
    chain = AncestralChain("cosine", 50)
    t = torch.tensor([10])
    a, b = chain.sqrt_abar[t].float(), chain.sqrt_one_minus_abar[t].float()
    x_t, eps, g = torch.randn(1, 2), torch.randn(1, 2), torch.randn(1, 2)
    x0 = lambda e: (x_t - b * e) / a  # noqa: E731
    torch.testing.assert_close(x0(condition_eps(eps, b, g)) - x0(eps), b ** 2 / a * g)


def test_noisy_classifier_loss_replays_the_noise_it_was_given():
    def classifier(x, t):
        return torch.stack([x.sum(1) * (1 + t.float() / 100), -x.sum(1)], 1)

    x, y = torch.randn(16, 2), torch.randint(0, 2, (16,))
    chain = AncestralChain("cosine", 20)
    loss = noisy_classifier_loss(classifier, chain, x, y, generator=torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    t = torch.randint(1, 21, (16,), generator=g)
    x_t = chain.q_sample(x, t, generator=g)
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(classifier(x_t, t), y))
    noise = dn.DiffusionNoise(sigma=0.5, p=0.5)
    loss = noisy_classifier_loss(classifier, noise, x, y, generator=torch.Generator().manual_seed(6))
    x_t, t = noise(x, generator=torch.Generator().manual_seed(6))
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(classifier(x_t, t), y))


def test_ancestral_step_with_the_true_noise_is_the_posterior_mean():
    chain = AncestralChain("linear", 30)
    x0, eps = torch.randn(8, 3, dtype=torch.float64), torch.randn(8, 3, dtype=torch.float64)
    t = torch.arange(1, 9) * 3
    x_t = chain.q_sample(x0, t, noise=eps)
    mean, var = chain.mean_variance(x_t, eps, t)
    betas = [0.0] + dn.beta_schedule("linear", 30).tolist()
    for i, step in enumerate(t.tolist()):
        abar = math.prod(1 - b for b in betas[1:step + 1])
        abar_prev = abar / (1 - betas[step])
        c1 = betas[step] * math.sqrt(abar_prev) / (1 - abar)
        c2 = (1 - abar_prev) * math.sqrt(1 - betas[step]) / (1 - abar)
        torch.testing.assert_close(mean[i], c1 * x0[i] + c2 * x_t[i])
        assert float(var[i]) == pytest.approx(betas[step] * (1 - abar_prev) / (1 - abar))


def test_ada_group_norm_is_group_norm_then_a_learned_scale_and_shift():
    norm = dn.AdaGroupNorm(num_groups=2, channels=4, cond_dim=3)
    h, c = torch.randn(5, 4, 6), torch.randn(5, 3)
    torch.testing.assert_close(norm(h, c), torch.nn.functional.group_norm(h, 2))
    with torch.no_grad():
        norm.modulation.weight.normal_()
        norm.modulation.bias.normal_()
    scale, shift = (c @ norm.modulation.weight.T + norm.modulation.bias).split(4, dim=1)
    expected = torch.nn.functional.group_norm(h, 2) * (1 + scale[:, :, None]) + shift[:, :, None]
    torch.testing.assert_close(norm(h, c), expected)
    with pytest.raises(ValueError, match="num_groups must divide channels; got 3 groups for 4 channels"):
        dn.AdaGroupNorm(3, 4, 2)
    with pytest.raises(ValueError, match=r"cond must have shape \[B, cond_dim\] with B = 5"):
        norm(h, c[:2])


def test_run_guidance_writes_metrics_and_the_figure(tmp_path):
    from diffaug_noise.cli.main import main

    result = CliRunner().invoke(main, ["run", "guidance", "--out", str(tmp_path), "--ddpm-iters", "20",
                                       "--classifier-iters", "10", "--T", "10", "--scales", "0,2", "--seeds", "2"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert [row["scale"] for row in metrics["per_scale"]] == [0.0, 2.0]
    for row in metrics["per_scale"] + metrics["runs"]:
        assert 0 <= row["class_precision"] <= row["hq_share"] <= 1 and 0 <= row["within_class_coverage"] <= 5
    assert len(metrics["runs"]) == 4 and metrics["nfe"] == 10 and metrics["environment"]["threads"] == 2
    assert (tmp_path / "guidance.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = CliRunner().invoke(main, ["run", "guidance", "--out", str(tmp_path), "--scales", "0,-1"])
    assert bad.exit_code == 2 and "scales must be numbers >= 0" in bad.output
