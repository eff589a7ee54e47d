import copy
import json
import os
import pickle
import time

import dnnlib
import torch
from torch_utils import misc


def training_loop(run_dir=".", G_kwargs={}, D_kwargs={}, loss_kwargs={}, augment_kwargs=None, rank=0, num_gpus=1,
                  DHead_kwargs=None,
                  batch_size=4, batch_gpu=2, total_kimg=0.032, augment_p=0, ada_target=None, ada_interval=4,
                  ada_kimg=500, resume_pkl=None, resolution=8, data=None, kimg_per_tick=0.008, **unused):
    device = torch.device("cuda", rank)  # hard-coded, as upstream
    torch.manual_seed(rank)
    common = dict(c_dim=0, img_resolution=resolution, img_channels=3)
    G = dnnlib.util.construct_class_by_name(**G_kwargs, **common).train().requires_grad_(False).to(device)
    D = dnnlib.util.construct_class_by_name(**D_kwargs, **common).train().requires_grad_(False).to(device)
    if resume_pkl is not None and rank == 0:
        with open(resume_pkl, "rb") as f:
            resume_data = pickle.load(f)
        for name, module in [("G", G), ("D", D)]:
            misc.copy_params_and_buffers(resume_data[name], module, require_all=False)
    # summary
    D(torch.empty([batch_gpu, 3, resolution, resolution], device=device), torch.empty([batch_gpu, 0], device=device))
    augment_pipe = None
    if augment_kwargs is not None and (augment_p > 0 or ada_target is not None):
        augment_pipe = dnnlib.util.construct_class_by_name(**augment_kwargs).train().requires_grad_(False).to(device)
        augment_pipe.p.copy_(torch.as_tensor(augment_p))
    ddp = dict(G_mapping=None, G_synthesis=G, D=D, augment_pipe=augment_pipe)
    if num_gpus > 1:
        D.requires_grad_(True)
        ddp["D"] = torch.nn.parallel.DistributedDataParallel(D, broadcast_buffers=False)
        D.requires_grad_(False)
    loss = dnnlib.util.construct_class_by_name(device=device, **ddp, **loss_kwargs)
    sampler = misc.InfiniteSampler(dataset=list(range(16)))
    del sampler
    extra = {}
    if DHead_kwargs is not None:  # InsGen: a contrastive head and a momentum copy of D, passed to the loss
        head = dnnlib.util.construct_class_by_name(**DHead_kwargs)
        extra = dict(cl_phases={"DHeadmain": dnnlib.EasyDict(module=head)}, D_ema=copy.deepcopy(D).eval())
    phases = [dnnlib.EasyDict(name=n, module=m, opt=torch.optim.Adam(m.parameters(), 1e-3, betas=[0.0, 0.99]),
                              interval=i)
              for n, m, i in [("Gmain", G, 1), ("Dmain", D, 1), ("Dreg", D, 2)]]
    g = torch.Generator().manual_seed(100 + rank)
    cur_nimg = 0  # three statements, as upstream's (the adapter's resumable loop rewrites each)
    batch_idx = 0
    cur_tick = 0
    tick_start_nimg, tick_start_time = cur_nimg, time.perf_counter()
    stats_jsonl = open(os.path.join(run_dir, "stats.jsonl"), "wt") if rank == 0 else None
    while cur_nimg < total_kimg * 1000:
        real = (torch.rand([batch_size // num_gpus, 3, resolution, resolution],
                           generator=g) * 2 - 1).to(device).split(batch_gpu)
        real_c = torch.zeros([batch_size // num_gpus, 0], device=device).split(batch_gpu)
        for phase in phases:
            if batch_idx % phase.interval != 0:
                continue
            phase.opt.zero_grad(set_to_none=True)
            phase.module.requires_grad_(True)
            gen_z = torch.randn([batch_size // num_gpus, G.z_dim], generator=g).to(device).split(batch_gpu)
            for round_idx, (r, c, z) in enumerate(zip(real, real_c, gen_z)):
                sync = round_idx == batch_size // (batch_gpu * num_gpus) - 1
                loss.accumulate_gradients(phase=phase.name, real_img=r, real_c=c, gen_z=z, gen_c=c, sync=sync,
                                          gain=phase.interval, **extra)
            phase.module.requires_grad_(False)
            phase.opt.step()
        cur_nimg += batch_size
        batch_idx += 1
        done = cur_nimg >= total_kimg * 1000
        if not done and cur_tick != 0 and cur_nimg < tick_start_nimg + kimg_per_tick * 1000:
            continue
        # A tick, as upstream: tick 0 is the first iteration; then every kimg_per_tick, and at the end.
        sec_per_kimg = (time.perf_counter() - tick_start_time) / (cur_nimg - tick_start_nimg) * 1e3
        if rank == 0:
            print(f"tick {cur_tick:<5d} kimg {cur_nimg / 1000:<8.3f} sec/kimg {sec_per_kimg:<7.2f}")
            stats_jsonl.write(json.dumps({"Progress/kimg": {"mean": cur_nimg / 1e3},
                                          "Timing/sec_per_kimg": {"mean": sec_per_kimg},
                                          "timestamp": time.time()}) + "\n")
            stats_jsonl.flush()
        cur_tick += 1
        tick_start_nimg, tick_start_time = cur_nimg, time.perf_counter()
    if stats_jsonl is not None:
        stats_jsonl.close()
    if rank == 0:
        snapshot = {name: copy.deepcopy(module).eval().requires_grad_(False).cpu() if module is not None else None
                    for name, module in [("G", G), ("D", D), ("augment_pipe", augment_pipe)]}
        with open(os.path.join(run_dir, f"network-snapshot-{cur_nimg // 1000:06d}.pkl"), "wb") as f:
            pickle.dump(snapshot, f)
    return D, loss
