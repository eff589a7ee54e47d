import torch


class Generator(torch.nn.Module):
    def __init__(self, z_dim=4, w_dim=4, c_dim=0, img_resolution=8, img_channels=3, **kwargs):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.res, self.img_channels = img_resolution, img_channels
        self.net = torch.nn.Linear(z_dim + c_dim, img_channels * img_resolution ** 2)

    def forward(self, z, c, **kwargs):
        return torch.tanh(self.net(torch.cat([z, c], dim=1))).view(-1, self.img_channels, self.res, self.res)


class Discriminator(torch.nn.Module):
    """Upstream's conditioning: the label through a mapping layer, projected on the features (cmap)."""

    def __init__(self, c_dim, img_resolution, img_channels, channel_base=32768, channel_max=512, block_kwargs={},
                 mapping_kwargs={}, epilogue_kwargs={}, **kwargs):
        super().__init__()
        self.c_dim = c_dim
        self.features = torch.nn.Linear(img_channels * img_resolution ** 2, 8)
        self.mapping = torch.nn.Linear(c_dim, 8) if c_dim else None
        self.out = torch.nn.Linear(8, 1 if c_dim == 0 else 8)

    def forward(self, img, c, update_emas=False, **kwargs):
        x = self.out(torch.nn.functional.leaky_relu(self.features(img.flatten(1)), 0.2))
        if self.mapping is not None:
            x = (x * self.mapping(c)).sum(dim=1, keepdim=True)
        return x
