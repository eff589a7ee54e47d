import torch
import torch.nn.functional as F
from torch import nn

from pg_modules.diffaug import DiffAugment
from pg_modules.projector import F_RandomProj


class MultiScaleD(nn.Module):
    """Four mini-discriminators, one per feature map; records what they receive for the tests."""

    def __init__(self, channels, cond=0, **kwargs):
        super().__init__()
        self.mini_discs = nn.ModuleDict({str(i): nn.Conv2d(c, 1, 1) for i, c in enumerate(channels)})
        for disc in self.mini_discs.values():  # logits of both signs from the start, so r_d is not pinned at -1
            nn.init.normal_(disc.weight, std=0.5)
            nn.init.zeros_(disc.bias)
        self.embed = nn.Embedding(1000, 1) if cond else None
        self.calls = []

    def forward(self, features, c):
        self.calls.append(({k: v.detach().clone() for k, v in features.items()}, c.detach().clone()))
        logits = [disc(features[k]).flatten(1) for k, disc in self.mini_discs.items()]
        out = torch.cat(logits, dim=1)
        if self.embed is not None:
            out = out + self.embed(c.argmax(1))
        return out


class ProjectedDiscriminator(nn.Module):
    def __init__(self, diffaug=True, interp224=True, backbone_kwargs={}, **kwargs):
        super().__init__()
        self.diffaug, self.interp224 = diffaug, interp224
        self.feature_network = F_RandomProj(**backbone_kwargs)
        self.discriminator = MultiScaleD(channels=self.feature_network.CHANNELS, **backbone_kwargs)

    def train(self, mode=True):
        self.feature_network = self.feature_network.train(False)
        self.discriminator = self.discriminator.train(mode)
        return self

    def forward(self, x, c):
        if self.diffaug:
            x = DiffAugment(x, policy="color,translation,cutout")
        if self.interp224:
            x = F.interpolate(x, 32, mode="bilinear", align_corners=False)  # upstream: 224
        return self.discriminator(self.feature_network(x), c)
