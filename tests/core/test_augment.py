"""DiffAugment's law is kornia's (ColorJiggle, RandomAffine, RandomErasing), with batched ops: same outputs for the
same parameters, same law of the parameters."""
import pytest
import torch
from scipy import stats

from diffaug_noise.augment import ORDERS, DiffAugment


def kornia_pipeline():
    K = pytest.importorskip("kornia.augmentation")
    return K.AugmentationSequential(
        K.ColorJiggle(brightness=0.25, contrast=0.5, saturation=1.0, p=1.0),
        K.RandomAffine(degrees=0.0, translate=(0.125, 0.125), padding_mode="zeros", p=1.0),
        K.RandomErasing(scale=(0.5**2, 0.5**2), ratio=(1.0, 1.0), value=0.5, p=1.0))


def our_params(kornia_params) -> dict:
    """kornia's drawn parameters in DiffAugment's terms (one order for the batch, as kornia draws it)."""
    color, affine, erasing = (p.data for p in kornia_params)
    order = tuple(step for step in color["order"].tolist() if step != 3)  # hue is 0: the identity
    B = len(color["brightness_factor"])
    return {"brightness": color["brightness_factor"].double() - 1, "contrast": color["contrast_factor"].double(),
            "saturation": color["saturation_factor"].double(), "order": torch.full((B,), ORDERS.index(order)),
            "shift": affine["translations"].double(), "cutout": torch.stack([erasing["xs"], erasing["ys"]], 1).long(),
            "side": int(erasing["widths"][0])}


@pytest.mark.parametrize("channels, size", [(1, 16), (3, 16), (1, 32), (3, 8)])
def test_the_ops_give_what_kornia_gives_for_the_same_parameters(channels, size):
    pipeline = kornia_pipeline()
    torch.manual_seed(channels * 100 + size)
    for _ in range(10):  # each draws another order of the color steps
        x = torch.rand(16, channels, size, size) * 2 - 1
        zero_one = (x + 1) / 2
        reference = pipeline(zero_one.expand(-1, 3, -1, -1) if channels == 1 else zero_one)[:, :channels] * 2 - 1
        ours = DiffAugment().apply_transform(x, our_params(pipeline._params))
        torch.testing.assert_close(ours, reference, atol=1e-5, rtol=0)


def test_the_parameters_follow_kornias_law():
    """Two-sample KS of every parameter against kornia's own generators' draws; the order is uniform."""
    pipeline, aug = kornia_pipeline(), DiffAugment()
    x = torch.zeros(4000, 1, 16, 16)
    torch.manual_seed(0)
    pipeline(x.expand(-1, 3, -1, -1))
    theirs = our_params(pipeline._params)
    ours = aug.generate_parameters(x, torch.Generator().manual_seed(1))
    assert ours["side"] == theirs["side"] == 8
    for name in ("brightness", "contrast", "saturation"):
        assert stats.ks_2samp(ours[name].numpy(), theirs[name].numpy()).pvalue > 1e-3, name
    for axis in range(2):
        assert stats.ks_2samp(ours["shift"][:, axis].numpy(), theirs["shift"][:, axis].numpy()).pvalue > 1e-3
        counts = [torch.bincount(p["cutout"][:, axis], minlength=9) for p in (ours, theirs)]
        assert stats.chi2_contingency(torch.stack(counts).numpy()).pvalue > 1e-3  # the same 9 positions, alike
        assert int(ours["cutout"][:, axis].max()) == 8  # 16 - 8: the square stays inside
    order_counts = torch.bincount(ours["order"], minlength=len(ORDERS)).numpy()
    assert stats.chisquare(order_counts).pvalue > 1e-3


def test_gradients_reach_the_input_and_a_generator_reproduces_the_draw():
    aug = DiffAugment()
    x = (torch.rand(8, 1, 16, 16) * 1.6 - 0.8).requires_grad_()
    y = aug(x, generator=torch.Generator().manual_seed(3))
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    again = aug(x.detach(), generator=torch.Generator().manual_seed(3))
    assert torch.equal(y.detach(), again)
    box = (y.detach() == 0).flatten(1).sum(1)
    assert (box >= 64).all()  # an 8x8 square of mid-grey in every image (and perhaps more zeros)


def test_grey_images_have_no_saturation_and_bad_shapes_are_named():
    aug = DiffAugment()
    x = torch.rand(6, 1, 8, 8) * 2 - 1
    params = aug.generate_parameters(x, torch.Generator().manual_seed(0))
    params["shift"].zero_()
    params["cutout"].fill_(0)
    params["side"] = 1
    changed = dict(params, saturation=params["saturation"] * 0 + 2.0)
    assert torch.equal(aug.apply_transform(x, params), aug.apply_transform(x, changed))
    with pytest.raises(ValueError, match=r"needs images \[B, 1 or 3, H, W\]; got shape \(6, 2, 8, 8\)"):
        aug(torch.zeros(6, 2, 8, 8))
    with pytest.raises(ValueError, match="translation must be in"):
        DiffAugment(translation=1.5)


def test_weight_init_code_reaches_a_model_holding_diffaugment():
    # nn.Module.apply(fn) calls apply on every submodule: DiffAugment's own apply(x, params) once shadowed it
    model = torch.nn.Sequential(DiffAugment(), torch.nn.Conv2d(3, 4, 3))
    seen = []
    model.apply(lambda module: seen.append(type(module).__name__))
    assert seen == ["DiffAugment", "Conv2d", "Sequential"]
