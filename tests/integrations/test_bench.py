"""`bench upstream`'s parts that need no upstream: the noise timer and the message of a failed run."""
import time

import torch

import diffaug_noise as dn
from diffaug_noise.integrations.bench import _failure, _timed_noise


def test_the_noise_timer_leaves_out_the_first_forward_of_each_input_shape():
    """That call compiles the kernel (seconds on a GPU), which would swamp the noise's share of sec/kimg."""
    noise, original = dn.DiffusionNoise(p=0.5), dn.DiffusionNoise.forward
    with _timed_noise() as seconds:
        noise(torch.randn(4, 3, 8, 8))
        assert seconds() == 0
        noise(torch.randn(4, 3, 8, 8))
        timed = seconds()
        assert timed > 0
        noise(torch.randn(2, 3, 8, 8))  # a new shape: its first call is not timed either
        assert seconds() == timed
        last_tick = time.time()
        noise(torch.randn(2, 3, 8, 8))  # after the run's last tick: left out of its noise time
        assert seconds(until=last_tick) == timed < seconds()
    assert dn.DiffusionNoise.forward is original


def output(*streams: str) -> list:
    return "".join(streams).splitlines()


def test_the_exception_line_wins_over_a_later_warning():
    traceback = "Traceback (most recent call last):\n  File \"train.py\", line 1\n" \
                "UnboundLocalError: cannot access local variable 'feat_last'\n"
    warning = "W1128 06:05:06 torch/utils/cpp_extension.py:183] No CUDA runtime is found\n"
    assert _failure(output(traceback, warning)) == "UnboundLocalError: cannot access local variable 'feat_last'"
    assert _failure(output("", "torch.OutOfMemoryError: CUDA out of memory\n\n")) == "torch.OutOfMemoryError: CUDA out of memory"


def test_without_an_exception_line_the_last_line_or_a_plain_note():
    assert _failure(output("tick 0 kimg 0.0\n", "Killed\n")) == "Killed"
    assert _failure(output("", "")) == "no output"


def test_custom_ops_are_read_from_upstreams_own_setup_lines():
    from diffaug_noise.integrations.bench import _custom_ops

    lines = ['Setting up PyTorch plugin "bias_act_plugin"... Done.',
             'Setting up PyTorch plugin "upfirdn2d_plugin"... ',  # a build's own output can come between the halves
             "ninja: no work to do.", "Failed!", "tick 0     kimg 0.0"]
    assert _custom_ops(lines) == {"bias_act_plugin": True, "upfirdn2d_plugin": False}
    assert _custom_ops(["tick 0     kimg 0.0"]) == {}  # the CPU, or an upstream that needs none (FastGAN)
    crashed = ['Setting up PyTorch plugin "bias_act_plugin"... ', "Traceback", 'Setting up PyTorch plugin "x"... Done.']
    assert _custom_ops(crashed) == {"x": True}  # no outcome of its own: bias_act_plugin is not counted as loaded
