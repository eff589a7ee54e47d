
import torch

from training.loss import StyleGAN2Loss


class StyleGAN2LossCL(StyleGAN2Loss):
    """InsGen's shape: the adversarial phases, plus instance discrimination on D's features of
    two views, through D and a momentum copy D_ema, called without t."""

    def run_cl(self, img, c, D_ema, head):
        view0 = self.augment_pipe(img) if self.augment_pipe is not None else img
        view1 = self.augment_pipe(img) if self.augment_pipe is not None else img
        _, feats0 = self.D(view0, c, return_feats=True)
        with torch.no_grad():
            _, feats1 = D_ema(view1, c, return_feats=True)
        return head(feats0, feats1)

    def accumulate_gradients(self, phase, real_img, real_c, gen_z, gen_c, sync, gain, cl_phases=None, D_ema=None,
                             lw_real_cl=1.0):
        super().accumulate_gradients(phase, real_img, real_c, gen_z, gen_c, sync, gain)
        if phase in ["Dmain", "Dboth"] and cl_phases is not None:
            self.run_cl(real_img, real_c, D_ema, cl_phases["DHeadmain"].module).mul(lw_real_cl * gain).backward()
