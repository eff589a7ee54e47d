import re

import torch


class InfiniteSampler(torch.utils.data.Sampler):
    def __init__(self, dataset, rank=0, num_replicas=1, seed=0):
        super().__init__(dataset)  # the call torch >= 2.2 rejects, as upstream makes it
        self.dataset, self.seed = dataset, seed


def params_and_buffers(module):
    return list(module.parameters()) + list(module.buffers())


def named_params_and_buffers(module):
    return list(module.named_parameters()) + list(module.named_buffers())


def copy_params_and_buffers(src_module, dst_module, require_all=False):
    src = dict(named_params_and_buffers(src_module))
    with torch.no_grad():
        for name, tensor in named_params_and_buffers(dst_module):
            if name in src:
                tensor.copy_(src[name])


CHECKED = []  # names of the modules check_ddp_consistency passed, for the tests


def check_ddp_consistency(module, ignore_regex=None):
    """As upstream: every parameter and buffer equal to rank 0's, or an AssertionError naming it."""
    for name, tensor in named_params_and_buffers(module):
        full_name = type(module).__name__ + "." + name
        if ignore_regex is not None and re.fullmatch(ignore_regex, full_name):
            continue
        tensor = tensor.detach()
        other = tensor.clone()
        torch.distributed.broadcast(tensor=other, src=0)
        assert (tensor == other).all(), full_name
    CHECKED.append(type(module).__name__)
