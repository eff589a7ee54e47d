"""taming's PatchGAN, by its signature (see the stand-in's README.md)."""
from torch import nn


def weights_init(m):
    if isinstance(m, nn.Conv2d):
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


class NLayerDiscriminator(nn.Module):
    def __init__(self, input_nc=3, ndf=64, n_layers=3, use_actnorm=False):
        super().__init__()
        if use_actnorm:
            raise NotImplementedError("the stand-in has no ActNorm")
        widths = [ndf * min(2 ** i, 8) for i in range(n_layers + 1)]
        layers = [nn.Conv2d(input_nc, widths[0], 4, 2, 1), nn.LeakyReLU(0.2, True)]
        for i in range(1, n_layers + 1):
            layers += [nn.Conv2d(widths[i - 1], widths[i], 4, 2 if i < n_layers else 1, 1, bias=False),
                       nn.BatchNorm2d(widths[i]), nn.LeakyReLU(0.2, True)]
        layers.append(nn.Conv2d(widths[-1], 1, 4, 1, 1))
        self.main = nn.Sequential(*layers)

    def forward(self, input):
        return self.main(input)
