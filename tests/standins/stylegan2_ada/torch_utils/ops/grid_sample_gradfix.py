import torch


def grid_sample(input, grid):
    """Upstream falls back to this on torch != 1.7/1.8; on CUDA it cannot be differentiated twice."""
    return torch.nn.functional.grid_sample(input, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
