import torch.nn.functional as F


class Loss:
    def __init__(self, D):
        self.D = D

    def run_D(self, img):
        return self.D(img)

    def accumulate_gradients(self, real):
        fake = real.flip(0) * 0.5
        (F.softplus(-self.run_D(real)).mean() + F.softplus(self.run_D(fake)).mean()).backward()
