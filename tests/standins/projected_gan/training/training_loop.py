import copy
import os
import pickle

import dnnlib
import torch
from torch_utils import misc


class Generator(torch.nn.Module):
    def __init__(self, z_dim=4, c_dim=0, img_resolution=16, img_channels=3, **kwargs):
        super().__init__()
        self.z_dim, self.c_dim, self.res = z_dim, c_dim, img_resolution
        self.net = torch.nn.Linear(z_dim, 3 * img_resolution ** 2)

    def forward(self, z, c):
        return torch.tanh(self.net(z)).view(-1, 3, self.res, self.res)


def training_loop(run_dir=".", G_kwargs={}, D_kwargs={}, G_opt_kwargs={}, D_opt_kwargs={}, loss_kwargs={}, rank=0,
                  num_gpus=1, batch_size=4, batch_gpu=2, total_kimg=0.032, resume_pkl=None, D_reg_interval=16,
                  G_reg_interval=None, resolution=16, **unused):
    device = torch.device("cuda", rank)  # hard-coded, as upstream
    torch.manual_seed(rank)
    G = Generator(img_resolution=resolution).train().requires_grad_(False).to(device)
    D = dnnlib.util.construct_class_by_name(**D_kwargs, c_dim=0, img_resolution=resolution, img_channels=3).train() \
        .requires_grad_(False).to(device)
    if resume_pkl is not None and rank == 0:
        with open(resume_pkl, "rb") as f:
            resume_data = pickle.load(f)
        misc.copy_params_and_buffers(resume_data["D"], D, require_all=False)
    for module in [G, D]:
        if num_gpus > 1:
            for param in misc.params_and_buffers(module):
                torch.distributed.broadcast(param, src=0)
    loss = dnnlib.util.construct_class_by_name(device=device, G=G, G_ema=G, D=D, **loss_kwargs)
    misc.InfiniteSampler(dataset=list(range(16)))
    phases = []
    for name, module, opt_kwargs, reg_interval in [("G", G, G_opt_kwargs, G_reg_interval),
                                                   ("D", D, D_opt_kwargs, D_reg_interval)]:
        opt = dnnlib.util.construct_class_by_name(params=module.parameters(), **opt_kwargs)  # betas=[0, 0.99] as given
        phases += [dnnlib.EasyDict(name=name + ("both" if reg_interval is None else "main"), module=module, opt=opt,
                                   interval=1)]
        if reg_interval is not None:
            phases += [dnnlib.EasyDict(name=name + "reg", module=module, opt=opt, interval=reg_interval)]
    g = torch.Generator().manual_seed(100 + rank)
    cur_nimg, batch_idx = 0, 0
    while cur_nimg < total_kimg * 1000:
        real = (torch.rand([batch_size // num_gpus, 3, resolution, resolution],
                           generator=g) * 2 - 1).to(device).split(batch_gpu)
        real_c = torch.zeros([batch_size // num_gpus, 0], device=device).split(batch_gpu)
        for phase in phases:
            if batch_idx % phase.interval != 0:
                continue
            phase.opt.zero_grad(set_to_none=True)
            phase.module.requires_grad_(True)
            if phase.name in ["Dmain", "Dboth", "Dreg"]:
                phase.module.feature_network.requires_grad_(False)
            gen_z = torch.randn([batch_size // num_gpus, G.z_dim], generator=g).to(device).split(batch_gpu)
            for r, c, z in zip(real, real_c, gen_z):
                loss.accumulate_gradients(phase=phase.name, real_img=r, real_c=c, gen_z=z, gen_c=c, gain=phase.interval,
                                          cur_nimg=cur_nimg)
            phase.module.requires_grad_(False)
            phase.opt.step()
        cur_nimg += batch_size
        batch_idx += 1
    if rank == 0:
        snapshot = {"D": copy.deepcopy(D).eval().requires_grad_(False).cpu(),
                    "progress": {"cur_nimg": torch.tensor(cur_nimg)}}
        with open(os.path.join(run_dir, "network-snapshot.pkl"), "wb") as f:
            pickle.dump(snapshot, f)
    return D, loss
