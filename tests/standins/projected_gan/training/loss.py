import torch.nn.functional as F
from torch_utils import training_stats


class ProjectedGANLoss:
    """Upstream's phases: Gboth (fakes, hinge), Dmain (fakes then reals), Dreg returns at once."""

    def __init__(self, device, G, D, G_ema, blur_init_sigma=0, blur_fade_kimg=0, **kwargs):
        self.device, self.G, self.D = device, G, D

    def run_G(self, z, c, update_emas=False):
        return self.G(z, c)

    def run_D(self, img, c, blur_sigma=0, update_emas=False):
        return self.D(img, c)

    def accumulate_gradients(self, phase, real_img, real_c, gen_z, gen_c, gain, cur_nimg):
        if phase in ["Dreg", "Greg"]:
            return
        if phase in ["Gmain", "Gboth"]:
            (-self.run_D(self.run_G(gen_z, gen_c), gen_c)).mean().backward()
        if phase in ["Dmain", "Dboth"]:
            gen_logits = self.run_D(self.run_G(gen_z, gen_c, update_emas=True), gen_c)
            F.relu(1 + gen_logits).mean().backward()
            real_logits = self.run_D(real_img.detach().requires_grad_(False), real_c)
            training_stats.report("Loss/signs/real", real_logits.sign())
            F.relu(1 - real_logits).mean().backward()
