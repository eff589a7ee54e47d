"""Every command's options come from settings dataclasses, and a shared setting says the same thing everywhere."""
import pathlib
import re

import click

from diffaug_noise.data import PrepareSettings
from diffaug_noise.knobs import knob_fields
from diffaug_noise.metrics.eval_settings import EvalInputs, EvalSettings
from diffaug_noise.settings import SETTINGS

CLI = pathlib.Path(__file__).resolve().parents[2] / "cli"


def commands(group=None, path=()):
    """(path, command) of every command of the CLI, groups included."""
    from diffaug_noise.cli.main import main

    group = main if group is None else group
    yield path, group
    for name, command in getattr(group, "commands", {}).items():
        yield from commands(command, (*path, name))


def test_no_command_writes_its_click_options_by_hand():
    hand_written = re.compile(r"@click\.option\(|click\.Option\(")
    offenders = [p.name for p in CLI.glob("*.py") if p.name != "knob_options.py" and hand_written.search(p.read_text())]
    assert offenders == []


def test_a_catalogue_setting_has_the_catalogues_help_and_spellings_in_every_command():
    seen = 0
    for path, command in commands():
        for param in command.params:
            if isinstance(param, click.Option) and param.name in SETTINGS:
                entry = SETTINGS[param.name]
                assert param.help.startswith(entry["help"]), (path, param.name, param.help)
                assert set(entry["aliases"]) <= set(param.opts), (path, param.name, param.opts)
                seen += 1
    assert seen >= 20  # the demos' and every adapter's and bench's layer settings


def test_eval_and_data_prepare_mirror_their_functions_flag_for_flag():
    found = dict((" ".join(path), command) for path, command in commands())
    eval_flags = {p.name for p in found["eval"].params if isinstance(p, click.Option)} - {"help", "repo", "json"}
    assert eval_flags == {f.name for f in knob_fields(EvalInputs) + knob_fields(EvalSettings)}
    prepare_flags = {p.name for p in found["data prepare"].params if isinstance(p, click.Option)} - {"help"}
    assert prepare_flags == {f.name for f in knob_fields(PrepareSettings)}


def test_data_root_is_declared_once():
    source = "\n".join(p.read_text() for p in CLI.glob("*.py"))
    assert "--data-root" not in source  # every command's --data-root is diffaug_noise.data's data_root_setting()
    helps = {p.help for _, command in commands() for p in command.params if p.name == "data_root"}
    assert len(helps) == 1 and "DIFFAUG_NOISE_DATA" in helps.pop()


def test_a_name_has_the_same_spellings_in_every_command():
    spellings = {}
    for path, command in commands():
        for param in command.params:
            if isinstance(param, click.Option) and param.name != "help":
                spellings.setdefault(param.name, {}).setdefault(frozenset(param.opts), []).append(" ".join(path))
    differing = {name: seen for name, seen in spellings.items() if len(seen) > 1}
    assert differing == {}
    assert {"--iterations", "--iters", "--steps"} <= next(iter(spellings["iterations"]))


def test_our_dataclasses_are_settings_and_options_are_flags_or_upstreams():
    root = CLI.parent
    sources = [p for folder in ("diffaug_noise", "integrations", "cli") for p in (root / folder).rglob("*.py")]
    declared = {p.name: re.findall(r"^class (\w+(?:Options|Config))\b", p.read_text(), re.M) for p in sources}
    named_options = {name: classes for name, classes in declared.items() if classes}
    assert named_options == {}  # one word: the earlier *Options and *Config names live on only as aliases (CHANGELOG)
