import copy
import json
import os
import pickle
import time

import dnnlib
import legacy
import numpy as np
import torch
from torch_utils import misc, training_stats
from torch_utils.ops import conv2d_gradfix, grid_sample_gradfix  # noqa: F401  (imported at start-up, as upstream)


def setup_snapshot_image_grid(training_set=None, random_seed=0):
    return (2, 2), None, None


def training_loop(run_dir=".", training_set_kwargs={}, G_kwargs={}, D_kwargs={}, G_opt_kwargs={}, D_opt_kwargs={},
                  augment_kwargs=None, loss_kwargs={}, random_seed=0, num_gpus=1, rank=0, batch_size=4, batch_gpu=4,
                  ema_kimg=10, ema_rampup=0.05, G_reg_interval=None, D_reg_interval=16, augment_p=0, ada_target=None,
                  ada_interval=4, ada_kimg=500, total_kimg=25000, kimg_per_tick=4, image_snapshot_ticks=50,
                  network_snapshot_ticks=50, resume_pkl=None, resume_kimg=0, **unused):
    device = torch.device("cuda", rank)  # hard-coded, as upstream
    torch.manual_seed(random_seed * num_gpus + rank)
    res, c_dim = training_set_kwargs.get("resolution", 8), training_set_kwargs.get("c_dim", 0)
    common = dict(c_dim=c_dim, img_resolution=res, img_channels=3)
    G = dnnlib.util.construct_class_by_name(**G_kwargs, **common).train().requires_grad_(False).to(device)
    D = dnnlib.util.construct_class_by_name(**D_kwargs, **common).train().requires_grad_(False).to(device)
    G_ema = copy.deepcopy(G).eval()
    if resume_pkl is not None and rank == 0:
        with dnnlib.util.open_url(resume_pkl) as f:
            resume_data = legacy.load_network_pkl(f)
        for name, module in [("G", G), ("D", D), ("G_ema", G_ema)]:
            misc.copy_params_and_buffers(resume_data[name], module, require_all=False)
    if rank == 0:  # the network summary: D called with (img, c)
        D(torch.empty([batch_gpu, 3, res, res], device=device), torch.empty([batch_gpu, c_dim], device=device))
    augment_pipe = None
    if augment_kwargs is not None and (augment_p > 0 or ada_target is not None):
        augment_pipe = dnnlib.util.construct_class_by_name(**augment_kwargs).train().requires_grad_(False).to(device)
        augment_pipe.p.copy_(torch.as_tensor(augment_p))
    for module in [G, D, G_ema, augment_pipe]:  # no DDP: rank 0's weights and buffers broadcast once
        if module is not None and num_gpus > 1:
            for param in misc.params_and_buffers(module):
                torch.distributed.broadcast(param, src=0)
    loss = dnnlib.util.construct_class_by_name(device=device, G=G, D=D, augment_pipe=augment_pipe, **loss_kwargs)
    misc.InfiniteSampler(dataset=list(range(16)), rank=rank, num_replicas=num_gpus, seed=random_seed)
    phases = []
    for name, module, opt_kwargs, reg_interval in [("G", G, G_opt_kwargs, G_reg_interval),
                                                   ("D", D, D_opt_kwargs, D_reg_interval)]:
        if reg_interval is None:
            opt = dnnlib.util.construct_class_by_name(params=module.parameters(), **opt_kwargs)
            phases += [dnnlib.EasyDict(name=name + "both", module=module, opt=opt, interval=1)]
        else:
            mb_ratio = reg_interval / (reg_interval + 1)
            opt_kwargs = dnnlib.EasyDict(opt_kwargs, lr=opt_kwargs["lr"] * mb_ratio,
                                         betas=[beta ** mb_ratio for beta in opt_kwargs["betas"]])
            opt = dnnlib.util.construct_class_by_name(module.parameters(), **opt_kwargs)
            phases += [dnnlib.EasyDict(name=name + "main", module=module, opt=opt, interval=1),
                       dnnlib.EasyDict(name=name + "reg", module=module, opt=opt, interval=reg_interval)]
    g = torch.Generator().manual_seed(100 + rank)
    stats_jsonl = open(os.path.join(run_dir, "stats.jsonl"), "wt") if rank == 0 else None
    cur_nimg = resume_kimg * 1000  # three statements, as upstream's (the adapter's resumable loop rewrites each)
    cur_tick = 0
    batch_idx = 0
    tick_start_nimg, tick_start_time = cur_nimg, time.perf_counter()
    ada_signs = 0
    while True:
        real = (torch.rand([batch_size // num_gpus, 3, res, res], generator=g) * 2 - 1).to(device).split(batch_gpu)
        labels = torch.randint(max(c_dim, 1), [batch_size // num_gpus], generator=g)
        real_c = torch.eye(max(c_dim, 1))[labels][:, :c_dim]
        real_c = real_c.to(device).split(batch_gpu)
        for phase in phases:
            if batch_idx % phase.interval != 0:
                continue
            phase.opt.zero_grad(set_to_none=True)
            phase.module.requires_grad_(True)
            gen_z = torch.randn([batch_size // num_gpus, G.z_dim], generator=g).to(device).split(batch_gpu)
            for r, c, z in zip(real, real_c, gen_z):
                loss.accumulate_gradients(phase=phase.name, real_img=r, real_c=c, gen_z=z, gen_c=c, gain=phase.interval,
                                          cur_nimg=cur_nimg)
            phase.module.requires_grad_(False)
            params = [param for param in phase.module.parameters() if param.grad is not None]
            if len(params) > 0:  # gradients all-reduced by hand, as upstream
                flat = torch.cat([param.grad.flatten() for param in params])
                if num_gpus > 1:
                    torch.distributed.all_reduce(flat)
                    flat /= num_gpus
                for param, grad in zip(params, flat.split([param.numel() for param in params])):
                    param.grad = grad.reshape(param.shape)
            phase.opt.step()
        ema_nimg = ema_kimg * 1000
        if ema_rampup is not None:
            ema_nimg = min(ema_nimg, cur_nimg * ema_rampup)
        ema_beta = 0.5 ** (batch_size / max(ema_nimg, 1e-8))
        for p_ema, p in zip(G_ema.parameters(), G.parameters()):
            p_ema.copy_(p.lerp(p_ema, ema_beta))
        cur_nimg += batch_size
        batch_idx += 1
        if augment_pipe is not None and ada_target is not None and batch_idx % ada_interval == 0:
            signs = training_stats.REPORTS["Loss/signs/real"][ada_signs:]
            ada_signs = len(training_stats.REPORTS["Loss/signs/real"])
            adjust = np.sign(np.mean(signs) - ada_target) * (batch_size * ada_interval) / (ada_kimg * 1000)
            augment_pipe.p.copy_((augment_pipe.p + adjust).clamp(min=0))
        done = cur_nimg >= total_kimg * 1000
        if not done and cur_tick != 0 and cur_nimg < tick_start_nimg + kimg_per_tick * 1000:
            continue
        sec_per_kimg = (time.perf_counter() - tick_start_time) / (cur_nimg - tick_start_nimg) * 1e3
        augment = float(augment_pipe.p) if augment_pipe is not None else 0
        if rank == 0:
            print(f"tick {cur_tick:<5d} kimg {cur_nimg / 1e3:<8.3f} sec/kimg {sec_per_kimg:<7.2f} augment "
                  f"{augment:.5f}")
        if network_snapshot_ticks is not None and (done or cur_tick % network_snapshot_ticks == 0):
            snapshot_data = dict(G=G, D=D, G_ema=G_ema, augment_pipe=augment_pipe, ema_beta=ema_beta)
            for key, value in snapshot_data.items():
                if isinstance(value, torch.nn.Module):
                    value = copy.deepcopy(value).eval().requires_grad_(False)
                    if num_gpus > 1:
                        misc.check_ddp_consistency(value, ignore_regex=r".*\.[^.]+_(avg|ema)")
                        for param in misc.params_and_buffers(value):
                            torch.distributed.broadcast(param, src=0)
                    snapshot_data[key] = value.cpu()
            if rank == 0:
                with open(os.path.join(run_dir, f"network-snapshot-{cur_nimg:06d}.pkl"), "wb") as f:
                    pickle.dump(snapshot_data, f)
        if stats_jsonl is not None:
            stats_jsonl.write(json.dumps({"Progress/tick": {"mean": cur_tick},
                                          "Progress/kimg": {"mean": cur_nimg / 1e3},
                                          "Progress/augment": {"mean": augment},
                                          "Progress/ema_beta": {"mean": ema_beta},
                                          "Timing/sec_per_kimg": {"mean": sec_per_kimg},
                                          "timestamp": time.time()}) + "\n")
            stats_jsonl.flush()
        cur_tick += 1
        tick_start_nimg, tick_start_time = cur_nimg, time.perf_counter()
        if done:
            break
    if stats_jsonl is not None:
        stats_jsonl.close()
    return D, loss
