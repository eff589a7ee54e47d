import torch
from torch_utils import misc, training_stats


class StyleGAN2Loss:
    """Upstream's phases and calls: Gmain (fakes), Dmain (fakes then reals), Dreg (R1 on reals)."""

    def __init__(self, device, G_mapping, G_synthesis, D, augment_pipe=None, r1_gamma=10):
        self.device, self.G, self.D, self.augment_pipe, self.r1_gamma = device, G_synthesis, D, augment_pipe, r1_gamma

    def run_G(self, z, c, sync):
        return self.G(z, c), None

    def run_D(self, img, c, sync):
        if self.augment_pipe is not None:
            img = self.augment_pipe(img)
        with misc.ddp_sync(self.D, sync):
            return self.D(img, c)

    def accumulate_gradients(self, phase, real_img, real_c, gen_z, gen_c, sync, gain):
        assert phase in ["Gmain", "Greg", "Gboth", "Dmain", "Dreg", "Dboth"]
        do_Gmain, do_Dmain = phase in ["Gmain", "Gboth"], phase in ["Dmain", "Dboth"]
        do_Dr1 = phase in ["Dreg", "Dboth"] and self.r1_gamma != 0
        if do_Gmain:
            gen_img, _ = self.run_G(gen_z, gen_c, sync=sync)
            gen_logits = self.run_D(gen_img, gen_c, sync=False)
            torch.nn.functional.softplus(-gen_logits).mean().mul(gain).backward()
        if do_Dmain:
            gen_img, _ = self.run_G(gen_z, gen_c, sync=False)
            gen_logits = self.run_D(gen_img.detach(), gen_c, sync=False)
            torch.nn.functional.softplus(gen_logits).mean().mul(gain).backward()
        if do_Dmain or do_Dr1:
            real_img_tmp = real_img.detach().requires_grad_(do_Dr1)
            real_logits = self.run_D(real_img_tmp, real_c, sync=sync)
            training_stats.report("Loss/signs/real", real_logits.sign())
            loss = torch.nn.functional.softplus(-real_logits) if do_Dmain else 0
            if do_Dr1:
                grads, = torch.autograd.grad(real_logits.sum(), real_img_tmp, create_graph=True)
                loss = loss + grads.square().sum([1, 2, 3]) * (self.r1_gamma / 2)
            (real_logits * 0 + loss).mean().mul(gain).backward()
