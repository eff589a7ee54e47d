"""`diffaug-noise recipe`: every row's commands are valid for the adapter and dataset they name."""
import shlex

import pytest
from click.testing import CliRunner

from diffaug_noise.cli.main import main
from diffaug_noise.cli.upstream import adapter_command
from diffaug_noise.data import DATASETS
from diffaug_noise.integrations import ADAPTERS
from diffaug_noise.integrations.recipes import RECIPES, commands


def test_list_shows_every_row_with_the_papers_fid():
    result = CliRunner().invoke(main, ["recipe", "--list"])
    assert result.exit_code == 0
    for recipe in RECIPES.values():
        fid = "-" if recipe.paper_fid is None else f"{recipe.paper_fid:.2f}"
        line = next(line for line in result.output.splitlines() if line.startswith(recipe.row + " "))
        assert line.split()[4] == fid
    assert {r.model for r in RECIPES.values()} == {"Diffusion-StyleGAN2", "Diffusion-ProjectedGAN", "Diffusion-InsGen",
                                                    "Diffusion-StyleGAN3-T", "Diffusion-StyleGAN3-R", "Diffusion-R3GAN"}
    # the paper has no StyleGAN3 or R3GAN rows
    assert all((r.paper_fid is None) == (r.adapter in ("stylegan3", "r3gan")) for r in RECIPES.values())
    assert RECIPES["stylegan2-lsun-bedroom"].gpu_days == pytest.approx((1 + 11 / 24) * 8)  # upstream's 8-V100 table
    assert RECIPES["stylegan3-t-afhq-cat"].gpu_days == pytest.approx(18.47 * 25_000 * 8 / 86_400)  # stylegan3's table


@pytest.mark.parametrize("row", sorted(RECIPES))
def test_every_rows_commands_parse_with_the_generated_cli(row):
    recipe = RECIPES[row]
    prepare, train, evaluate = commands(recipe, repo="/r", source="/s")
    assert prepare[3] in DATASETS and recipe.resolution == DATASETS[recipe.dataset].resolution
    assert train[2] == recipe.adapter and "--data" in train and train[train.index("--data") + 1] in DATASETS
    # the generated `run <adapter>` command accepts every option and choice the recipe uses
    adapter_command(ADAPTERS[recipe.adapter]).make_context("run", train[3:])
    assert evaluate[:2] == ["diffaug-noise", "eval"] and "fid50k_full" in evaluate


def test_a_row_prints_its_commands_and_an_unknown_row_names_the_fix():
    result = CliRunner().invoke(main, ["recipe", "insgen-afhq-wild", "--repo", "~/insgen"])
    assert result.exit_code == 0 and "FID 1.51" in result.output
    assert "diffaug-noise run insgen --repo ~/insgen --data afhq_wild" in result.output
    bad = CliRunner().invoke(main, ["recipe", "biggan-imagenet"])
    assert bad.exit_code == 2 and "unknown row 'biggan-imagenet'" in bad.output and "recipe --list" in bad.output


ODD = ["it's here", "with space", "-leading-dash", "x --help", "s --force --out ELSEWHERE.zip", 'say "hi"', "~tilde"]


@pytest.mark.parametrize("odd", ODD)
def test_recipe_run_passes_every_value_whole(tmp_path, monkeypatch, odd):
    """No value is re-split: a path with spaces, quotes, options or a leading dash reaches the command whole."""
    import subprocess

    from diffaug_noise.cli.data import prepare_command

    repo, source, outdir = (tmp_path / f"{what} {odd}" for what in ("repo", "source", "runs"))
    repo.mkdir()
    source.mkdir()
    calls = []
    monkeypatch.setattr(subprocess, "call", lambda argv, **kwargs: calls.append(argv) or 0)
    result = CliRunner().invoke(main, ["recipe", "stylegan2-cifar10", "--repo", str(repo), "--source", str(source),
                                       "--outdir", str(outdir), "--run"])
    assert result.exit_code == 0, result.output
    prepare, train = (argv[3:] for argv in calls)  # after: python -m diffaug_noise.cli
    assert prepare[:3] == ["data", "prepare", "cifar10"] and train[:2] == ["run", "stylegan2"]
    assert prepare_command.make_context("prepare", prepare[2:]).params["source"] == source
    params = adapter_command(ADAPTERS["stylegan2"]).make_context("run", train[2:]).params
    assert str(params["repo"]) == str(repo) and str(params["outdir"]) == str(outdir / "stylegan2-cifar10")
    for line, argv in zip(result.output.splitlines()[1:3], (prepare, train)):  # the printed lines paste back whole
        assert shlex.split(line)[1:] == argv


def test_an_option_inside_a_value_stays_inside_it(tmp_path):
    """Was: --repo '/x --help' ran `run stylegan2 --help` and the recipe exited 0 without training; --source
    'SRC --force --out /elsewhere.zip' prepared SRC at /elsewhere.zip, outside the data root."""
    from PIL import Image

    helped = CliRunner().invoke(main, ["recipe", "stylegan2-celeba", "--repo", f"{tmp_path}/x --help", "--outdir",
                                       str(tmp_path / "runs"), "--run"])
    assert helped.exit_code == 1 and "exited with" in helped.output and "Usage" not in helped.output
    src, elsewhere = tmp_path / "src", tmp_path / "elsewhere.zip"
    src.mkdir()
    for i in range(3):
        Image.new("RGB", (8, 8), (60 * i, 0, 0)).save(src / f"{i}.png")
    moved = CliRunner().invoke(main, ["recipe", "stylegan2-celeba", "--repo", str(tmp_path / "repo"), "--source",
                                      f"{src} --force --out {elsewhere}", "--outdir", str(tmp_path / "runs"), "--run"],
                               env={"DIFFAUG_NOISE_DATA": str(tmp_path / "root")})
    assert moved.exit_code == 1 and "exited with 2" in moved.output
    assert not elsewhere.exists() and not (tmp_path / "root").exists()
