import torch


class AugmentPipe(torch.nn.Module):
    """ADA's pipe: an overall probability p (a buffer) and a differentiable change of the images."""

    def __init__(self, **kwargs):
        super().__init__()
        self.register_buffer("p", torch.ones([]))
        self.calls = 0

    def forward(self, images):
        self.calls += 1
        return images * (1 - 0.5 * self.p)
