import copy
import json
import os
import pickle
import time

import dnnlib
import legacy
import numpy as np
import torch
from torch_utils import misc
from torch_utils.ops import conv2d_gradfix, grid_sample_gradfix  # noqa: F401  (imported at start-up, as upstream)


def cosine_decay(cur_nimg, base_value, total_nimg, final_value=0.0):
    decay = 0.5 * (1 + np.cos(np.pi * min(cur_nimg, total_nimg) / total_nimg))
    return float(base_value + (1 - decay) * (final_value - base_value))


def setup_snapshot_image_grid(training_set=None, random_seed=0):
    return (2, 2), None, None


def training_loop(run_dir=".", training_set_kwargs={}, G_kwargs={}, D_kwargs={}, G_opt_kwargs={}, D_opt_kwargs={},
                  lr_scheduler=None, beta2_scheduler=None, augment_kwargs=None, loss_kwargs={}, gamma_scheduler=None,
                  random_seed=0, num_gpus=1, rank=0, batch_size=4, g_batch_gpu=4, d_batch_gpu=4, ema_scheduler=None,
                  aug_scheduler=None, total_kimg=25000, kimg_per_tick=4, image_snapshot_ticks=50,
                  network_snapshot_ticks=50, resume_pkl=None, **unused):
    device = torch.device("cuda", rank)  # hard-coded, as upstream
    torch.manual_seed(random_seed * num_gpus + rank)
    res, c_dim = training_set_kwargs.get("resolution", 8), training_set_kwargs.get("c_dim", 0)
    common = dict(c_dim=c_dim, img_resolution=res)  # no img_channels, as upstream
    # Sampler(None) upstream
    misc.InfiniteSampler(dataset=list(range(16)), rank=rank, num_replicas=num_gpus, seed=random_seed)
    G = dnnlib.util.construct_class_by_name(**G_kwargs, **common).train().requires_grad_(False).to(device)
    D = dnnlib.util.construct_class_by_name(**D_kwargs, **common).train().requires_grad_(False).to(device)
    G_ema = copy.deepcopy(G).eval()
    if resume_pkl is not None:
        with dnnlib.util.open_url(resume_pkl) as f:
            resume_data = legacy.load_network_pkl(f)
        if rank == 0:
            for name, module in [("G", G), ("D", D), ("G_ema", G_ema)]:
                misc.copy_params_and_buffers(resume_data[name], module, require_all=False)
    if rank == 0:
        D(G(torch.empty([2, G.z_dim], device=device), torch.empty([2, c_dim], device=device)),
          torch.empty([2, c_dim], device=device))
    augment_pipe = None
    if augment_kwargs is not None and aug_scheduler is not None:
        augment_pipe = dnnlib.util.construct_class_by_name(**augment_kwargs).train().requires_grad_(False).to(device)
    for module in [G, D, G_ema]:
        if num_gpus > 1:
            for param in misc.params_and_buffers(module):
                torch.distributed.broadcast(param, src=0)
    loss = dnnlib.util.construct_class_by_name(G=G, D=D, augment_pipe=augment_pipe, **loss_kwargs)
    phases = []
    for name, module, opt_kwargs, batch_gpu in [("D", D, D_opt_kwargs, d_batch_gpu),
                                                ("G", G, G_opt_kwargs, g_batch_gpu)]:
        opt = dnnlib.util.construct_class_by_name(params=module.parameters(), **opt_kwargs)  # betas=[0, 0] as given
        if resume_pkl is not None:
            opt.load_state_dict(resume_data[name + "_opt_state"])
        phases.append(dnnlib.EasyDict(name=name, module=module, opt=opt, batch_gpu=batch_gpu))
    g = torch.Generator().manual_seed(100 + rank)
    stats_jsonl = open(os.path.join(run_dir, "stats.jsonl"), "wt") if rank == 0 else None
    cur_nimg = resume_data["cur_nimg"] if resume_pkl is not None else 0  # three statements, as upstream's
    cur_tick = 0
    batch_idx = 0
    tick_start_nimg, tick_start_time = cur_nimg, time.perf_counter()
    while True:
        cur_lr = cosine_decay(cur_nimg, **lr_scheduler)
        cur_beta2 = cosine_decay(cur_nimg, **beta2_scheduler)
        cur_gamma = cosine_decay(cur_nimg, **gamma_scheduler)
        cur_ema_nimg = cosine_decay(cur_nimg, **ema_scheduler)
        if augment_pipe is not None:
            augment_pipe.p.copy_(torch.as_tensor(cosine_decay(cur_nimg, **aug_scheduler)))
        for phase in phases:
            real = (torch.rand([batch_size // num_gpus, 3, res, res],
                               generator=g) * 2 - 1).to(device).split(phase.batch_gpu)
            labels = torch.randint(max(c_dim, 1), [batch_size // num_gpus], generator=g)
            real_c = torch.eye(max(c_dim, 1))[labels][:, :c_dim]
            gen_z = torch.randn([batch_size // num_gpus, G.z_dim], generator=g).to(device).split(phase.batch_gpu)
            phase.opt.zero_grad(set_to_none=True)
            phase.module.requires_grad_(True)
            for r, c, z in zip(real, real_c.to(device).split(phase.batch_gpu), gen_z):
                loss.accumulate_gradients(phase=phase.name, real_img=r, real_c=c, gen_z=z, gamma=cur_gamma,
                                          gain=num_gpus * phase.batch_gpu / batch_size)
            phase.module.requires_grad_(False)
            for group in phase.opt.param_groups:
                group["lr"], group["betas"] = cur_lr, (0, cur_beta2)
            params = [param for param in phase.module.parameters() if param.grad is not None]
            if len(params) > 0:
                flat = torch.cat([param.grad.flatten() for param in params])
                if num_gpus > 1:
                    torch.distributed.all_reduce(flat)
                    flat /= num_gpus
                for param, grad in zip(params, flat.split([param.numel() for param in params])):
                    param.grad = grad.reshape(param.shape)
            phase.opt.step()
        ema_beta = 0.5 ** (batch_size / max(cur_ema_nimg, 1e-8))
        for p_ema, p in zip(G_ema.parameters(), G.parameters()):
            p_ema.copy_(p.lerp(p_ema, ema_beta))
        cur_nimg += batch_size
        batch_idx += 1
        done = cur_nimg >= total_kimg * 1000
        if not done and cur_tick != 0 and cur_nimg < tick_start_nimg + kimg_per_tick * 1000:
            continue
        sec_per_kimg = (time.perf_counter() - tick_start_time) / (cur_nimg - tick_start_nimg) * 1e3
        augment = float(augment_pipe.p) if augment_pipe is not None else 0
        if rank == 0:
            print(f"tick {cur_tick:<5d} kimg {cur_nimg / 1e3:<8.3f} sec/kimg {sec_per_kimg:<7.2f} augment "
                  f"{augment:.3f}")
        if network_snapshot_ticks is not None and (done or cur_tick % network_snapshot_ticks == 0):
            snapshot_data = dict(G=G, D=D, G_ema=G_ema, cur_nimg=cur_nimg)
            for phase in phases:
                snapshot_data[phase.name + "_opt_state"] = phase.opt.state_dict()
            for key, value in snapshot_data.items():
                if isinstance(value, torch.nn.Module):
                    value = copy.deepcopy(value).eval().requires_grad_(False)
                    if num_gpus > 1:
                        misc.check_ddp_consistency(value, ignore_regex=r".*\.[^.]+_(avg|ema)")
                        for param in misc.params_and_buffers(value):
                            torch.distributed.broadcast(param, src=0)
                    snapshot_data[key] = value.cpu()
            if rank == 0:
                with open(os.path.join(run_dir, f"network-snapshot-{cur_nimg:09d}.pkl"), "wb") as f:
                    pickle.dump(snapshot_data, f)
        if stats_jsonl is not None:
            stats_jsonl.write(json.dumps({"Progress/tick": {"mean": cur_tick},
                                          "Progress/kimg": {"mean": cur_nimg / 1e3},
                                          "Progress/augment": {"mean": augment}, "Progress/gamma": {"mean": cur_gamma},
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
