import torch


class Generator(torch.nn.Module):
    def __init__(self, NoiseDimension=4, c_dim=0, img_resolution=8, FP16Stages=(), **kwargs):
        super().__init__()
        self.z_dim, self.c_dim, self.res = NoiseDimension, c_dim, img_resolution
        self.net = torch.nn.Linear(NoiseDimension + c_dim, 3 * img_resolution ** 2)

    def forward(self, x, c):
        return torch.tanh(self.net(torch.cat([x, c], dim=1))).view(-1, 3, self.res, self.res)


class Discriminator(torch.nn.Module):
    """As upstream's wrapper: with c_dim > 0 the condition is embedded linearly (no bias) and projected on the
    features."""

    def __init__(self, c_dim=0, img_resolution=8, WidthPerStage=(8, 8), ConditionEmbeddingDimension=0, FP16Stages=(),
                 **kwargs):
        super().__init__()
        self.features = torch.nn.Linear(3 * img_resolution ** 2, WidthPerStage[-1])
        out = 1 if c_dim == 0 else ConditionEmbeddingDimension
        assert out > 0, "a conditional D needs ConditionEmbeddingDimension"
        self.head = torch.nn.Linear(WidthPerStage[-1], out)
        self.embedding = torch.nn.Linear(c_dim, ConditionEmbeddingDimension, bias=False) if c_dim else None

    def forward(self, x, c):
        h = self.head(torch.nn.functional.leaky_relu(self.features(x.flatten(1)), 0.2))
        if self.embedding is not None:
            h = (h * self.embedding(c)).sum(dim=1, keepdim=True)
        return h.view(x.shape[0])
