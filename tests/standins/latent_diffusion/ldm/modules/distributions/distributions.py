"""latent-diffusion's diagonal Gaussian posterior, by its signature (see the stand-in's README.md)."""
import torch


class DiagonalGaussianDistribution:
    def __init__(self, parameters, deterministic=False):
        self.mean, logvar = torch.chunk(parameters, 2, dim=1)
        self.logvar = torch.clamp(logvar, -30.0, 20.0)
        self.deterministic = deterministic
        self.std, self.var = torch.exp(0.5 * self.logvar), torch.exp(self.logvar)
        if deterministic:
            self.std = self.var = torch.zeros_like(self.mean)

    def sample(self):
        return self.mean + self.std * torch.randn_like(self.mean)

    def kl(self):
        if self.deterministic:
            return torch.zeros(self.mean.shape[0])
        return 0.5 * torch.sum(self.mean ** 2 + self.var - 1.0 - self.logvar, dim=[1, 2, 3])

    def mode(self):
        return self.mean
