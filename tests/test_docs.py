"""The usage examples of README.md and docs/ run, and CI runs README.md's test command."""
import pathlib
import re

import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def fenced(lang, text=README):
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def test_readme_usage_example_runs_and_adapts():
    (example,) = fenced("python")
    assert len(example.strip().splitlines()) <= 20
    namespace = {}
    exec(compile(example, "README.md", "exec"), namespace)
    noise, ctrl = namespace["noise"], namespace["ctrl"]
    assert ctrl.step == 20 and ctrl.step // ctrl.interval == 5
    assert noise.T == noise.t_min + round(noise.p * (noise.t_max - noise.t_min))
    assert isinstance(namespace["loss_g"], torch.Tensor) and torch.isfinite(namespace["loss_g"])


def test_readme_has_exactly_two_setup_commands_and_ci_runs_the_test_one():
    commands = [block.strip() for block in fenced("bash")]
    assert len(commands) == 2
    run, test = commands
    assert "diffaug-noise run" in run
    assert test in (ROOT / ".ci" / "run").read_text()


def test_ddgan_doc_example_trains_and_samples_with_T_generator_calls():
    (example,) = fenced("python", (ROOT / "docs" / "ddgan.md").read_text())
    assert len(example.strip().splitlines()) <= 20
    namespace = {}
    exec(compile(example, "docs/ddgan.md", "exec"), namespace)
    assert namespace["samples"].shape == (500, 2) and torch.isfinite(namespace["samples"]).all()
    assert torch.isfinite(namespace["loss_d"]) and torch.isfinite(namespace["loss_g"])


def test_every_example_of_the_losses_page_runs():
    examples = fenced("python", (ROOT / "docs" / "losses.md").read_text())
    assert len(examples) == 3
    for example in examples:
        assert len(example.strip().splitlines()) <= 25
        exec(compile(example, "docs/losses.md", "exec"), {})
