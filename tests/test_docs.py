"""The usage examples of README.md and docs/ run, and CI runs README.md's test command."""
import importlib
import pathlib
import re
import shlex
import sys
import warnings

import pytest
import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def fenced(lang, text=README):
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def test_readme_usage_examples_run_and_adapt():
    example, forms, _ = fenced("python")
    assert len(example.strip().splitlines()) <= 20
    assert sum("# +" in line for line in example.splitlines()) <= 5  # the lines a user adds
    namespace = {}
    exec(compile(example, "README.md", "exec"), namespace)
    D = namespace["D"]
    assert D.controller.step == 20 and D.controller.step // D.controller.interval == 5
    assert D.noise.T == D.noise.t_min + round(D.noise.p * (D.noise.t_max - D.noise.t_min))
    assert isinstance(namespace["loss_g"], torch.Tensor) and torch.isfinite(namespace["loss_g"])
    exec(compile(example.split("\nfor step")[0] + "\n" + forms, "README.md", "exec"), namespace)
    assert namespace["msd"].controller is namespace["mpd"].controller and namespace["D"].condition_channels == 3


@pytest.mark.parametrize("standin, import_line", [
    ("taming", None),
    ("latent_diffusion", "from ldm.modules.losses import LPIPSWithDiscriminator as VQLPIPSWithDiscriminator"),
])
def test_readme_autoencoder_lines_work_on_both_upstream_classes(standin, import_line):
    from helpers import forget_upstream

    block = fenced("python")[2]
    assert len(block.strip().splitlines()) <= 5
    if import_line:  # latent-diffusion's class, in the same lines
        block = re.sub(r"^from taming\.modules\.losses\.vqperceptual import .*$", import_line, block, flags=re.M)
        assert import_line in block
    folders = [ROOT / "tests" / "standins" / name for name in dict.fromkeys((standin, "taming"))]
    for folder in folders:
        forget_upstream(folder, ("taming", "ldm"))
        sys.path.insert(0, str(folder))
    try:
        namespace = {}
        exec(compile(block, "README.md", "exec"), namespace)
        loss, D = namespace["loss"], namespace["D"]
        assert loss.discriminator is D and D.loss == "hinge"
        x = torch.randn(8, 3, 32, 32)
        if import_line:
            from ldm.modules.distributions.distributions import DiagonalGaussianDistribution
            posteriors = DiagonalGaussianDistribution(torch.zeros(8, 4, 2, 2))
        for step in (10_000, 10_001):  # D trains from disc_start = 10001: the controller counts the second step only
            loss(*((x, x.flip(0), posteriors) if import_line else (torch.zeros(()), x, x.flip(0))), 1, step)
        assert D.controller.step == 1 and float(D.controller._sums[1]) > 0
    finally:
        for folder in folders:
            forget_upstream(folder, ("taming", "ldm"))


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
    assert len(examples) == 4
    for example in examples:
        assert len(example.strip().splitlines()) <= 25
        exec(compile(example, "docs/losses.md", "exec"), {})


RECIPES = (("pix2pix", "netD"), ("taming", "loss.discriminator"), ("hifigan", "mpd"))  # per block: stand-in, wrapper


def test_every_recipe_of_the_any_discriminator_page_runs_against_its_upstreams_stand_in():
    from helpers import forget_upstream

    examples = fenced("python", (ROOT / "docs" / "any-discriminator.md").read_text())
    assert len(examples) == len(RECIPES)
    runs = list(zip(examples, RECIPES))
    runs.append((examples[0].replace('gan_mode = "lsgan"', 'gan_mode = "vanilla"'), RECIPES[0]))
    assert runs[-1][0] != examples[0]
    for example, (standin, wrapper) in runs:
        assert len(example.strip().splitlines()) <= 30
        assert sum("# +" in line for line in example.splitlines()) <= 5  # the lines a user adds
        folder = ROOT / "tests" / "standins" / standin
        forget_upstream(folder, ("models", "taming"))  # another test's stand-in of the same module name
        sys.path.insert(0, str(folder))
        try:
            namespace = {}
            exec(compile(example, f"docs/any-discriminator.md ({standin})", "exec"), namespace)
        finally:
            forget_upstream(folder, ("models", "taming"))
        D = eval(wrapper, namespace)
        assert isinstance(D, namespace["dn"].DiffusionAwareDiscriminator)
        assert D.controller.step >= 2 and float(D.controller._sums[1]) > 0  # it stepped and read the reals


# Docs that cannot drift: every repo path, module and command line README.md and docs/ show is real.
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]  # not CHANGELOG.md: it names what was
REPO_PATH = re.compile(r"(?<![\w./~-])((?:\.ci|tests|docs|diffaug_noise|integrations|cli|tools)/[\w./-]*[\w/])"
                       r"(?:::(\w+))?")
MODULE = re.compile(r"(?<![\w./])(diffaug_noise(?:\.\w+)+)")
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def page_id(page):
    return str(page.relative_to(ROOT))


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_repo_path_and_link_a_page_names_exists(page):
    text, missing = page.read_text(), []
    for path, test_name in REPO_PATH.findall(text):
        target = ROOT / path.rstrip(".")
        if not target.exists():
            missing.append(path)
        elif test_name and not re.search(rf"^\s*def {test_name}\(", target.read_text(), re.M):
            missing.append(f"{path}::{test_name}")
    missing += [link for link in LINK.findall(text)
                if not link.startswith(("http://", "https://")) and not (page.parent / link).exists()]
    assert missing == []


def resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            found = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        try:
            for name in parts[split:]:
                found = getattr(found, name)
        except AttributeError:
            return False
        return True
    return False


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_module_and_name_a_page_imports_from_exists(page):
    assert [name for name in MODULE.findall(page.read_text()) if not resolves(name.rstrip("."))] == []


def command_lines(text: str) -> list[tuple[list[str], bool]]:
    """The ``diffaug-noise ...`` commands of a page, each with whether it is whole: those of code blocks (one per
    line, ``\\`` continuations joined, ``&&`` chains split; ``python -m diffaug_noise.cli`` too) are; inline
    code in prose may be a fragment. ``...`` (an elided value) and NAME/ADAPTER read as placeholders."""
    blocks = re.findall(r"```[\w-]*\n(.*?)```", text, flags=re.S)
    prose = re.sub(r"```[\w-]*\n.*?```", "", text, flags=re.S)
    lines = [(part, True) for block in blocks for line in block.replace("\\\n", " ").splitlines()
             for part in line.split("&&")]
    lines += [(span.replace("\n", " "), False) for span in re.findall(r"`([^`]+)`", prose)]
    commands = []
    for line, whole in lines:
        if "diffaug-noise" not in line and "diffaug_noise.cli" not in line:
            continue  # output shown in a block (an error with an apostrophe) is no command
        words = shlex.split(line, comments=True)
        starts = [1] if words[:1] == ["diffaug-noise"] else []
        starts += [i + 1 for i, w in enumerate(words) if w == "diffaug_noise.cli" and i and words[i - 1] == "-m"]
        for start in starts[:1]:
            placeholders = {"...": "X", "NAME": "stylegan2", "ADAPTER": "stylegan2"}
            commands.append(([placeholders.get(w, w) for w in words[start:]], whole))
    return commands


def parse_only(args: list[str]) -> None:
    """Parse ``args`` with the CLI down to its last subcommand, as click would before running it; run nothing.
    A group named without a subcommand (prose about ``diffaug-noise run``) parses."""
    import click

    from diffaug_noise.cli.main import main

    def unparsed(ctx):  # what a group left for its subcommand (click 8 keeps the name apart, 9 will not)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return [*ctx.protected_args, *ctx.args]

    command, ctx = main, main.make_context("diffaug-noise", list(args))
    while isinstance(command, click.Group) and unparsed(ctx):
        name, command, rest = command.resolve_command(ctx, unparsed(ctx))
        if isinstance(command, click.Group) and not rest:
            return
        ctx = command.make_context(name, rest, parent=ctx)


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_command_a_page_shows_parses(page, monkeypatch):
    import click

    monkeypatch.setattr(click.Path, "convert", lambda self, value, param, ctx: value)  # example paths need not exist
    failures = []
    for args, whole in command_lines(page.read_text()):
        try:
            parse_only(args)
        except click.exceptions.Exit:  # --help
            pass
        except click.MissingParameter:
            if whole:  # a fragment in prose may leave out what the command needs
                failures.append(f"diffaug-noise {shlex.join(args)}: misses a required option")
        except click.ClickException as err:
            failures.append(f"diffaug-noise {shlex.join(args)}: {err.format_message()}")
    assert failures == []


def test_the_docs_checks_catch_a_wrong_path_module_and_flag():
    assert not resolves("diffaug_noise.evaluation.evaluate") and resolves("diffaug_noise.metrics.evaluation.evaluate")
    page = "run `diffaug-noise run toy --iters 5` and\n```bash\ndiffaug-noise bench \\\n  --no-such && ls\n```"
    assert command_lines(page) == [(["bench", "--no-such"], True), (["run", "toy", "--iters", "5"], False)]
    parse_only(["run", "toy", "--iters", "5"])
    with pytest.raises(Exception, match="No such option"):
        parse_only(["bench", "--no-such"])
    with pytest.raises(Exception, match="'7' is not one of"):
        parse_only(["run", "stylegan2", "--data", "x", "--outdir", "y", "--aug", "7"])
    assert REPO_PATH.findall("see tests/core/test_noise.py::test_x and ~/stylegan3/docs/x.md") == \
        [("tests/core/test_noise.py", "test_x")]
