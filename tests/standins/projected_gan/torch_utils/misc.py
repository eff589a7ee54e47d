import torch


class InfiniteSampler(torch.utils.data.Sampler):
    def __init__(self, dataset, seed=0):
        super().__init__(dataset)  # the call torch >= 2.2 rejects, as upstream makes it
        self.dataset, self.seed = dataset, seed


def copy_params_and_buffers(src_module, dst_module, require_all=False):
    src = dict(list(src_module.named_parameters()) + list(src_module.named_buffers()))
    with torch.no_grad():
        for name, tensor in list(dst_module.named_parameters()) + list(dst_module.named_buffers()):
            if name in src:
                tensor.copy_(src[name])


def params_and_buffers(module):
    return list(module.parameters()) + list(module.buffers())
