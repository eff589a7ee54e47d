"""LPIPS by its call signature: a fixed random conv net (upstream's pretrained VGG weights cannot be downloaded)."""
import torch
from torch import nn


class LPIPS(nn.Module):
    def __init__(self, use_dropout=True):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 8, 3, 2, 1))
        for p in self.net.parameters():
            p.data = torch.randn(p.shape, generator=generator) * 0.2
            p.requires_grad_(False)

    def forward(self, input, target):
        a, b = self.net(input), self.net(target)
        return ((a - b) ** 2).mean(dim=(1, 2, 3), keepdim=True)
