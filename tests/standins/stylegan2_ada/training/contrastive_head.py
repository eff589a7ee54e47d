import torch


class CLHead(torch.nn.Module):
    """InsGen's head interface: features of two views in, a contrastive loss out."""

    def __init__(self, inplanes=16):
        super().__init__()
        self.mlp = torch.nn.Linear(inplanes, 8)

    def forward(self, q, k, loss_only=False, update_q=False):
        q, k = torch.nn.functional.normalize(self.mlp(q), dim=1), torch.nn.functional.normalize(self.mlp(k), dim=1)
        logits = q @ k.T / 0.2
        return torch.nn.functional.cross_entropy(logits, torch.arange(q.shape[0]))
