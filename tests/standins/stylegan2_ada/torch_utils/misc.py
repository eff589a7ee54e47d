import contextlib

import torch


@contextlib.contextmanager
def ddp_sync(module, sync):
    if isinstance(module, torch.nn.parallel.DistributedDataParallel) and not sync:
        with module.no_sync():
            yield
    else:
        yield


class InfiniteSampler(torch.utils.data.Sampler):
    def __init__(self, dataset, seed=0):
        super().__init__(dataset)  # the call torch >= 2.2 rejects, as upstream makes it
        self.dataset, self.seed = dataset, seed

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed)
        while True:
            yield int(torch.randint(len(self.dataset), (), generator=g))


def copy_params_and_buffers(src_module, dst_module, require_all=False):
    src = dict(list(src_module.named_parameters()) + list(src_module.named_buffers()))
    for name, tensor in list(dst_module.named_parameters()) + list(dst_module.named_buffers()):
        if name in src:
            tensor.detach().copy_(src[name].detach())
