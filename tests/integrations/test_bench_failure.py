"""A failed `bench upstream` run names the exception it ended with, not whatever it printed last."""
from diffaug_noise.integrations.bench import _failure


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
