"""pix2pix/CycleGAN's discriminators and GAN loss, by their signatures (see ../README.md)."""
import functools

import torch
from torch import nn


def get_norm_layer(norm_type="instance"):
    if norm_type == "batch":
        return functools.partial(nn.BatchNorm2d, affine=True, track_running_stats=True)
    if norm_type == "instance":
        return functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)
    if norm_type == "none":
        return lambda channels: nn.Identity()
    raise NotImplementedError(f"normalization layer [{norm_type}] is not found")


class NLayerDiscriminator(nn.Module):
    """PatchGAN: ``n_layers`` strided convolutions doubling the width (at most 8 * ndf), then a 1-channel map."""

    def __init__(self, input_nc, ndf=64, n_layers=3, norm_layer=nn.BatchNorm2d):
        super().__init__()
        widths = [ndf * min(2 ** i, 8) for i in range(n_layers + 1)]
        layers = [nn.Conv2d(input_nc, widths[0], 4, 2, 1), nn.LeakyReLU(0.2, True)]
        for i in range(1, n_layers + 1):
            stride = 2 if i < n_layers else 1
            layers += [nn.Conv2d(widths[i - 1], widths[i], 4, stride, 1, bias=False), norm_layer(widths[i]),
                       nn.LeakyReLU(0.2, True)]
        layers.append(nn.Conv2d(widths[-1], 1, 4, 1, 1))
        self.model = nn.Sequential(*layers)

    def forward(self, input):
        return self.model(input)


class PixelDiscriminator(nn.Module):
    """1x1 PatchGAN: a logit per pixel."""

    def __init__(self, input_nc, ndf=64, norm_layer=nn.BatchNorm2d):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(input_nc, ndf, 1), nn.LeakyReLU(0.2, True),
                                 nn.Conv2d(ndf, 2 * ndf, 1, bias=False), norm_layer(2 * ndf), nn.LeakyReLU(0.2, True),
                                 nn.Conv2d(2 * ndf, 1, 1))

    def forward(self, input):
        return self.net(input)


def init_weights(net, init_type="normal", init_gain=0.02):
    def init(module):
        if isinstance(module, (nn.Conv2d, nn.Linear)) and init_type == "normal":
            nn.init.normal_(module.weight, 0.0, init_gain)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    net.apply(init)


def init_net(net, init_type="normal", init_gain=0.02, gpu_ids=()):
    if gpu_ids:
        net = torch.nn.DataParallel(net.to(gpu_ids[0]), gpu_ids)
    init_weights(net, init_type, init_gain)
    return net


def define_D(input_nc, ndf, netD, n_layers_D=3, norm="batch", init_type="normal", init_gain=0.02, gpu_ids=()):
    norm_layer = get_norm_layer(norm)
    if netD == "basic":
        net = NLayerDiscriminator(input_nc, ndf, n_layers=3, norm_layer=norm_layer)
    elif netD == "n_layers":
        net = NLayerDiscriminator(input_nc, ndf, n_layers_D, norm_layer=norm_layer)
    elif netD == "pixel":
        net = PixelDiscriminator(input_nc, ndf, norm_layer=norm_layer)
    else:
        raise NotImplementedError(f"Discriminator model name [{netD}] is not recognized")
    return init_net(net, init_type, init_gain, gpu_ids)


class GANLoss(nn.Module):
    """lsgan: MSE to the target label; vanilla: BCE with logits; wgangp: -mean for reals, mean for fakes."""

    def __init__(self, gan_mode, target_real_label=1.0, target_fake_label=0.0):
        super().__init__()
        self.register_buffer("real_label", torch.tensor(target_real_label))
        self.register_buffer("fake_label", torch.tensor(target_fake_label))
        self.gan_mode = gan_mode
        if gan_mode == "lsgan":
            self.loss = nn.MSELoss()
        elif gan_mode == "vanilla":
            self.loss = nn.BCEWithLogitsLoss()
        elif gan_mode == "wgangp":
            self.loss = None
        else:
            raise NotImplementedError(f"gan mode {gan_mode} not implemented")

    def get_target_tensor(self, prediction, target_is_real):
        return (self.real_label if target_is_real else self.fake_label).expand_as(prediction)

    def __call__(self, prediction, target_is_real):
        if self.gan_mode == "wgangp":
            return -prediction.mean() if target_is_real else prediction.mean()
        return self.loss(prediction, self.get_target_tensor(prediction, target_is_real))
