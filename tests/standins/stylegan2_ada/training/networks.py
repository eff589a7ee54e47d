import torch


class Generator(torch.nn.Module):
    def __init__(self, z_dim, c_dim, img_resolution, img_channels):
        super().__init__()
        self.z_dim, self.c_dim, self.img_resolution, self.img_channels = z_dim, c_dim, img_resolution, img_channels
        self.net = torch.nn.Linear(z_dim, img_channels * img_resolution ** 2)

    def forward(self, z, c):
        return torch.tanh(self.net(z)).view(-1, self.img_channels, self.img_resolution, self.img_resolution)


class Discriminator(torch.nn.Module):
    """Like upstream's: a label input of width c_dim mapped and projected onto the image features."""

    def __init__(self, c_dim, img_resolution, img_channels, channel_base=64, mapping_kwargs=None):
        super().__init__()
        self.c_dim = c_dim
        self.features = torch.nn.Linear(img_channels * img_resolution ** 2, channel_base)
        self.out = torch.nn.Linear(channel_base, 1)
        self.mapping = torch.nn.Linear(c_dim, channel_base) if c_dim > 0 else None
        self.calls = []  # (img, c, return_feats) of every call, for the contract tests

    def forward(self, img, c, return_feats=False):
        self.calls.append((img.detach().clone(), c.detach().clone(), return_feats))
        h = torch.nn.functional.leaky_relu(self.features(img.flatten(1)), 0.2)
        x = self.out(h)
        if self.mapping is not None:
            x = x + (self.mapping(c) * h).sum(dim=1, keepdim=True) / h.shape[1] ** 0.5
        return (x, h) if return_feats else x
