import torch
import torch.nn.functional as F
from torch_utils import training_stats


class Loss:
    def accumulate_gradients(self, phase, real_img, real_c, gen_z, gen_c, gain, cur_nimg):
        raise NotImplementedError()


class StyleGAN2Loss(Loss):
    """Upstream's phases and order: Gmain (fakes), Dmain (fakes, then reals), Dreg (R1 on the reals); blur by
    cur_nimg."""

    def __init__(self, device, G, D, augment_pipe=None, r1_gamma=10, blur_init_sigma=0, blur_fade_kimg=0, **kwargs):
        self.device, self.G, self.D, self.augment_pipe, self.r1_gamma = device, G, D, augment_pipe, r1_gamma
        self.blur_init_sigma, self.blur_fade_kimg = blur_init_sigma, blur_fade_kimg
        self.blur_sigmas = []  # what each call used, for the tests

    def run_G(self, z, c, update_emas=False):
        return self.G(z, c)

    def run_D(self, img, c, blur_sigma=0, update_emas=False):
        if blur_sigma > 0:  # a blur of the images D sees, fading out over the first kimg (differentiable)
            img = F.avg_pool2d(img, 3, stride=1, padding=1, count_include_pad=False) * (blur_sigma / (1 + blur_sigma)) \
                + img * (1 / (1 + blur_sigma))
        if self.augment_pipe is not None:
            img = self.augment_pipe(img)
        return self.D(img, c, update_emas=update_emas)

    def accumulate_gradients(self, phase, real_img, real_c, gen_z, gen_c, gain, cur_nimg):
        blur_sigma = max(1 - cur_nimg / (self.blur_fade_kimg * 1e3),
                         0) * self.blur_init_sigma if self.blur_fade_kimg > 0 else 0
        self.blur_sigmas.append(blur_sigma)
        if phase in ["Gmain", "Gboth"]:
            F.softplus(-self.run_D(self.run_G(gen_z, gen_c), gen_c, blur_sigma=blur_sigma)).mean().mul(gain).backward()
        if phase in ["Dmain", "Dboth"]:
            gen_logits = self.run_D(self.run_G(gen_z, gen_c, update_emas=True), gen_c, blur_sigma=blur_sigma,
                                    update_emas=True)
            F.softplus(gen_logits).mean().mul(gain).backward()
        if phase in ["Dmain", "Dreg", "Dboth"]:
            real_img_tmp = real_img.detach().requires_grad_(phase in ["Dreg", "Dboth"])
            real_logits = self.run_D(real_img_tmp, real_c, blur_sigma=blur_sigma)
            training_stats.report("Loss/signs/real", real_logits.sign())
            loss = F.softplus(-real_logits) if phase in ["Dmain", "Dboth"] else 0
            if phase in ["Dreg", "Dboth"]:
                (r1_grads,) = torch.autograd.grad(outputs=[real_logits.sum()], inputs=[real_img_tmp], create_graph=True)
                loss = loss + r1_grads.square().sum([1, 2, 3]) * (self.r1_gamma / 2)
            (loss.mean() if torch.is_tensor(loss) else torch.tensor(0.0)).mul(gain).backward()
