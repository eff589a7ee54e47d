def _should_use_custom_op(input):
    """Upstream (stylegan3's) enables its custom op on any CUDA tensor, whatever the torch version."""
    return input.device.type == "cuda"
