import importlib
import os
import pickle

import torch


def construct(class_name, **kwargs):
    module, name = class_name.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)(**kwargs)


def training_loop(D_kwargs, loss_kwargs, outdir, iterations, batch):
    D = construct(**D_kwargs)
    loss = construct(D=D, **loss_kwargs)
    opt = torch.optim.SGD(D.parameters(), lr=0.1)
    for it in range(iterations):
        opt.zero_grad()
        loss.accumulate_gradients(torch.randn(batch, 4) + 2)
        opt.step()
        print(f"tick {it:<3d} kimg {(it + 1) * batch / 1000:<6.3f}")
    os.makedirs(outdir, exist_ok=True)
    with open(os.path.join(outdir, "snapshot.pkl"), "wb") as f:
        pickle.dump({"D": D}, f)
