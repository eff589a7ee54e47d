import collections

REPORTS = collections.defaultdict(list)  # name -> list of float means (one per report call with values)


def report(name, value):  # as upstream's: report(name, []) names the statistic and counts nothing
    import torch
    elems = torch.as_tensor(value).detach().double()
    REPORTS[name]
    if elems.numel():
        REPORTS[name].append(float(elems.mean()))
    return value


def report0(name, value):
    return report(name, value)


def init_multiprocessing(rank, sync_device):  # upstream's train.py passes torch.device('cuda', rank) with several
    if sync_device is not None:               # ranks; its first sync puts the counters there
        import torch
        torch.zeros((), device=sync_device)
