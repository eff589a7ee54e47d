import torch
import torch.nn.functional as F


def gradient_penalty(samples, logits):
    """The squared norm of D's gradient w.r.t. its input, per sample (R1 on reals, R2 on fakes)."""
    (grad,) = torch.autograd.grad(outputs=logits.sum(), inputs=samples, create_graph=True)
    return grad.square().sum([1, 2, 3])


class AdversarialTraining:
    """R3GAN's loss: softplus(-(D(fake) - D(real))) for G; softplus(-(D(real) - D(fake))) + gamma/2 (R1 + R2) for D."""

    def __init__(self, Generator, Discriminator):
        self.Generator, self.Discriminator = Generator, Discriminator

    def AccumulateGeneratorGradients(self, Noise, RealSamples, Conditions, Scale=1, Preprocessor=lambda x: x):
        fake = self.Generator(Noise, Conditions)
        real = RealSamples.detach()
        fake_logits = self.Discriminator(Preprocessor(fake), Conditions)
        real_logits = self.Discriminator(Preprocessor(real), Conditions)
        relativistic = fake_logits - real_logits
        loss = F.softplus(-relativistic)
        (Scale * loss.mean()).backward()
        return [v.detach() for v in (loss, relativistic)]

    def AccumulateDiscriminatorGradients(self, Noise, RealSamples, Conditions, Gamma, Scale=1,
                                         Preprocessor=lambda x: x):
        real = RealSamples.detach().requires_grad_(True)
        fake = self.Generator(Noise, Conditions).detach().requires_grad_(True)
        real_logits = self.Discriminator(Preprocessor(real), Conditions)
        fake_logits = self.Discriminator(Preprocessor(fake), Conditions)
        r1, r2 = gradient_penalty(real, real_logits), gradient_penalty(fake, fake_logits)
        relativistic = real_logits - fake_logits
        loss = F.softplus(-relativistic)
        (Scale * (loss + (Gamma / 2) * (r1 + r2)).mean()).backward()
        return [v.detach() for v in (loss, relativistic, r1, r2)]
