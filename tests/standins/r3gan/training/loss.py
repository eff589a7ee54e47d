import torch
from R3GAN.Trainer import AdversarialTraining
from torch_utils import training_stats


class R3GANLoss:
    def __init__(self, G, D, augment_pipe=None):
        self.trainer = AdversarialTraining(G, D)
        self.preprocessor = (lambda x: augment_pipe(x.to(torch.float32)).to(x.dtype)) if augment_pipe is not None \
            else (lambda x: x)

    def accumulate_gradients(self, phase, real_img, real_c, gen_z, gamma, gain):
        if phase == "G":
            loss, relativistic = self.trainer.AccumulateGeneratorGradients(gen_z, real_img, real_c, gain,
                                                                           self.preprocessor)
            training_stats.report("Loss/G/loss", loss)
        if phase == "D":
            loss, relativistic, r1, r2 = self.trainer.AccumulateDiscriminatorGradients(
                gen_z, real_img, real_c, gamma, gain, self.preprocessor)
            training_stats.report("Loss/signs/real", relativistic.sign())
            training_stats.report("Loss/r1_penalty", r1)
            training_stats.report("Loss/r2_penalty", r2)
