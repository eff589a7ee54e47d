"""HiFi-GAN's discriminators and losses, by their signatures, at a sixteenth of the widths (see README.md)."""
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm, weight_norm

LRELU_SLOPE = 0.1
WIDTH = 16  # upstream's channel counts divided by this


def _w(channels):
    return max(channels // WIDTH, 4)


class DiscriminatorP(nn.Module):
    def __init__(self, period, kernel_size=5, stride=3, use_spectral_norm=False):
        super().__init__()
        self.period = period
        norm = spectral_norm if use_spectral_norm else weight_norm
        widths = [1, _w(32), _w(128), _w(512), _w(1024)]
        self.convs = nn.ModuleList(
            [norm(nn.Conv2d(a, b, (kernel_size, 1), (stride, 1), padding=(2, 0))) for a, b in zip(widths, widths[1:])]
            + [norm(nn.Conv2d(widths[-1], widths[-1], (kernel_size, 1), 1, padding=(2, 0)))])
        self.conv_post = norm(nn.Conv2d(widths[-1], 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, x):
        fmap = []
        b, c, t = x.shape
        if t % self.period:
            x = F.pad(x, (0, self.period - t % self.period), "reflect")
        x = x.view(b, c, x.shape[-1] // self.period, self.period)
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LRELU_SLOPE)
            fmap.append(x)
        x = self.conv_post(x)
        fmap.append(x)
        return torch.flatten(x, 1, -1), fmap


class MultiPeriodDiscriminator(nn.Module):
    def __init__(self):
        super().__init__()
        self.discriminators = nn.ModuleList(DiscriminatorP(p) for p in (2, 3, 5, 7, 11))

    def forward(self, y, y_hat):
        y_d_rs, y_d_gs, fmap_rs, fmap_gs = [], [], [], []
        for d in self.discriminators:
            y_d_r, fmap_r = d(y)
            y_d_g, fmap_g = d(y_hat)
            y_d_rs.append(y_d_r)
            fmap_rs.append(fmap_r)
            y_d_gs.append(y_d_g)
            fmap_gs.append(fmap_g)
        return y_d_rs, y_d_gs, fmap_rs, fmap_gs


class DiscriminatorS(nn.Module):
    def __init__(self, use_spectral_norm=False):
        super().__init__()
        norm = spectral_norm if use_spectral_norm else weight_norm
        self.convs = nn.ModuleList([
            norm(nn.Conv1d(1, _w(128), 15, 1, padding=7)),
            norm(nn.Conv1d(_w(128), _w(128), 41, 2, groups=4, padding=20)),
            norm(nn.Conv1d(_w(128), _w(256), 41, 2, groups=4, padding=20)),
            norm(nn.Conv1d(_w(256), _w(1024), 41, 4, groups=4, padding=20)),
            norm(nn.Conv1d(_w(1024), _w(1024), 5, 1, padding=2)),
        ])
        self.conv_post = norm(nn.Conv1d(_w(1024), 1, 3, 1, padding=1))

    def forward(self, x):
        fmap = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LRELU_SLOPE)
            fmap.append(x)
        x = self.conv_post(x)
        fmap.append(x)
        return torch.flatten(x, 1, -1), fmap


class MultiScaleDiscriminator(nn.Module):
    def __init__(self):
        super().__init__()
        self.discriminators = nn.ModuleList([DiscriminatorS(use_spectral_norm=True), DiscriminatorS(),
                                             DiscriminatorS()])
        self.meanpools = nn.ModuleList([nn.AvgPool1d(4, 2, padding=2), nn.AvgPool1d(4, 2, padding=2)])

    def forward(self, y, y_hat):
        y_d_rs, y_d_gs, fmap_rs, fmap_gs = [], [], [], []
        for i, d in enumerate(self.discriminators):
            if i:
                y, y_hat = self.meanpools[i - 1](y), self.meanpools[i - 1](y_hat)
            y_d_r, fmap_r = d(y)
            y_d_g, fmap_g = d(y_hat)
            y_d_rs.append(y_d_r)
            fmap_rs.append(fmap_r)
            y_d_gs.append(y_d_g)
            fmap_gs.append(fmap_g)
        return y_d_rs, y_d_gs, fmap_rs, fmap_gs


def feature_loss(fmap_r, fmap_g):
    return 2 * sum(torch.mean(torch.abs(r - g)) for dr, dg in zip(fmap_r, fmap_g) for r, g in zip(dr, dg))


def discriminator_loss(disc_real_outputs, disc_generated_outputs):
    r_losses = [torch.mean((1 - dr) ** 2) for dr in disc_real_outputs]
    g_losses = [torch.mean(dg ** 2) for dg in disc_generated_outputs]
    return sum(r + g for r, g in zip(r_losses, g_losses)), [r.item() for r in r_losses], [g.item() for g in g_losses]


def generator_loss(disc_outputs):
    gen_losses = [torch.mean((1 - dg) ** 2) for dg in disc_outputs]
    return sum(gen_losses), gen_losses
