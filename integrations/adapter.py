"""The adapter contract, checked when an adapter registers; the machinery every adapter runs; the registry.

An adapter is one subclass of :class:`Adapter` (an upstream's lives in ``integrations/upstreams/``)
and one ``register(...)`` line in ``integrations/__init__.py``. From its declarations alone,
``diffaug-noise run NAME`` is generated (options, defaults and help included), :meth:`Adapter.run`
runs the pre-flight checks and upstream's own ``train.py``, and :meth:`Adapter.baseline` gives
upstream with the shims alone (what ``bench upstream`` compares with). What a subclass states
(:data:`CONTRACT`; :func:`register` refuses an adapter that leaves one out, in one line naming it):

- ``name``, ``title``, ``description``, ``example``, ``cpu_note``: the command and its help;
- ``upstream``: an :class:`~.spec.Upstream` (where to get the code, its marker files, the names
  patched, the tested commits);
- ``settings_class``: a :class:`~.adapter_settings.DiffusionSettings` subclass (its knobs, documented once; its
  field ``preset`` lists the presets it accepts, its default first);
- ``d_phases``: the names of upstream's D phases (after the last round of one, the controller steps);
- ``t_input``: how ``t`` reaches D (a name of :data:`~diffaug_noise.CONDITIONINGS` or of :data:`T_INPUTS`);
- ``signal``: its loss's controller signal (``sign``: ``sign(D(real))`` of logits; ``relativistic``);
- ``resume``: how a run resumes (:data:`RESUMES`);
- ``entry_patches(modules, settings)``: the patches that point upstream's training at the adapter's
  D and loss (given the imported upstream modules and the settings);
- ``compat_patches(settings)``: the shims' patches (:mod:`.shims`, each naming the upstream bug it
  fixes; ``[]`` for none). Called in every process of a run (spawned ranks too, which receive the
  adapter and its settings pickled), after upstream is imported there.

Hooks with defaults, for an upstream whose ``train.py`` is not NVlabs' (``process_patches``,
``launch_patches``, ``preflight``, ``start``, ``launchers``): see their docstrings. The StyleGAN
skeleton's adapters subclass :class:`~.skeleton.StyleGANAdapter`, which writes most of the above.
docs/integrations.md ("Adding an adapter") walks through both.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import pathlib
import re

from diffaug_noise.conditioning import CONDITIONINGS
from diffaug_noise.controller import SIGNALS
from diffaug_noise.registry import Registry

from .adapter_settings import DiffusionSettings
from .kit import LossSettings
from .launch import LAUNCHERS
from .patching import patched_attributes, spawn_patch, tick_line_patch
from .preflight import check_gpus, check_resume
from .spec import Upstream, UpstreamError, import_checked, locate_repo, warn_if_untested

# Ways t reaches D that are no conditioning module of the core (those are the names of CONDITIONINGS).
T_INPUTS = {"features": "the noise is on D's feature maps, t reaches the heads judging them (ProjectedGAN's "
                        "mini-discriminators) as a class label, or not at all"}
RESUMES = {
    "snapshot progress": "--resume of a snapshot it wrote goes on from its kimg, tick and ADA p; p and T are D's "
                         "buffers",
    "upstream": "upstream's own checkpoints restore the run; p and T are D's buffers",
    "none": "a resumed run starts p and T afresh",
}
CONTRACT = {  # what a subclass states -> what it is (the refusal names both)
    "name": "the command, diffaug-noise run NAME",
    "title": "what it trains, e.g. 'Diffusion-StyleGAN2'",
    "upstream": "an Upstream: where upstream's code comes from, its marker files, the names patched, the tested "
                "commits",
    "settings_class": "its settings, a DiffusionSettings dataclass with a preset field",
    "d_phases": "the names of upstream's D phases, e.g. ('Dmain', 'Dboth')",
    "t_input": f"how t reaches D, one of {', '.join([*CONDITIONINGS, *T_INPUTS])}",
    "signal": f"its loss's controller signal, one of {', '.join(SIGNALS)}",
    "resume": f"how a run resumes, one of {', '.join(RESUMES)}",
    "description": "a paragraph for --help: what is noised and how t reaches D",
    "example": "one command line, after diffaug-noise run NAME",
    "cpu_note": "the upstream flags that make a CPU mechanics run affordable ('' for none)",
    "entry_patches": "a method (modules, settings) -> the patches that make upstream build our D and loss",
    "compat_patches": "a method (settings) -> the shims' patches ([] for none)",
}
_METHODS = ("entry_patches", "compat_patches")


def _rank_patches(adapter: "Adapter", repo: str, settings: DiffusionSettings, shims: bool) -> list:
    """The patches every process of a run needs: the import shims, the adapter's per-process patches and, with
    shims, its compatibility patches. Module-level, so that spawned ranks can rebuild them."""
    imports = adapter.import_patches(shims)
    with patched_attributes(imports):
        modules = import_checked(adapter.upstream, pathlib.Path(repo))
    return imports + adapter.process_patches(modules, repo) + (adapter.compat_patches(settings) if shims else [])


class Adapter:
    """One upstream codebase made to train Diffusion-GAN; subclasses state the module docstring's contract."""

    launchers = ("spawn",)  # how run() may start upstream (the StyleGAN skeleton adds "torchrun")
    contract = CONTRACT  # what a subclass must state (a skeleton's base class may ask for more)

    def __eq__(self, other):  # adapters keep no state: one of a class is as good as another
        return type(self) is type(other)

    def __hash__(self):
        return hash(type(self))

    def __repr__(self):
        return f"<adapter {getattr(self, 'name', '?')!r}: {type(self).__module__}.{type(self).__qualname__}>"

    @property
    def presets(self) -> tuple:
        """The presets this adapter accepts; the first is its default."""
        return _field(self.settings_class, "preset").metadata["choices"]

    def settings(self, **values) -> DiffusionSettings:
        """The adapter's settings object; unknown names fail with the list of known ones."""
        known = {f.name for f in dataclasses.fields(self.settings_class)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise TypeError(f"{self.name}: unknown option(s) {unknown}; known: {', '.join(sorted(known))}")
        return self.settings_class(**values)

    def controller_kwargs(self, settings: DiffusionSettings) -> dict:
        """:class:`~diffaug_noise.AdaptiveController` arguments: the settings' and this adapter's ``signal``."""
        return {**settings.controller_kwargs(), "signal": self.signal}

    def loss_settings(self, settings: DiffusionSettings, batch_size: int, rounds: int | None = None) -> dict:
        """What a :class:`~.kit.LossWrapper` needs to know: a :class:`~.kit.LossSettings` in its JSON form, for
        upstream's training settings."""
        return LossSettings(batch_size=batch_size, d_phases=self.d_phases, controller=self.controller_kwargs(settings),
                            rounds=rounds).as_json()

    def summary(self) -> str:
        """The declarations a user reads in ``--help``: how t reaches D, the controller's signal, the resume."""
        if self.t_input in T_INPUTS:
            t_input = T_INPUTS[self.t_input]
        else:
            t_input = re.sub(r"``?", "", (CONDITIONINGS[self.t_input].__doc__ or "").strip().splitlines()[0])
        return (f"t reaches D: {self.t_input} ({t_input.rstrip('.')}). Controller signal: {self.signal}. "
                f"Resume: {self.resume} ({RESUMES[self.resume]}).")

    @classmethod
    def declaration_error(cls) -> str | None:
        """What is wrong with the further declarations a skeleton's base class asks for, in words, or None."""
        return None

    def entry_patches(self, modules: dict, settings: DiffusionSettings) -> list:
        """The patches that make upstream's training build our D and loss (every adapter writes its own)."""
        raise NotImplementedError

    def compat_patches(self, settings: DiffusionSettings) -> list:
        """The shims' patches, in every process after upstream is imported (every adapter writes its own)."""
        raise NotImplementedError

    def import_patches(self, shims: bool) -> list:
        """The shims that must be in place before upstream is imported (none without shims)."""
        return [patch for shim in self.upstream.import_shims for patch in shim()] if shims else []

    def process_patches(self, modules: dict, repo: str) -> list:
        """Patches every process of a run gets, shims or not: here the diffusion state on the loop module's
        ``tick ...`` lines (a module whose lines read otherwise is left as it is)."""
        return tick_line_patch(modules[self.upstream.loop_module])

    def launch_patches(self, modules: dict, per_process, launcher: str) -> list:
        """How the ranks upstream starts get ``per_process()``'s patches: through ``torch.multiprocessing.spawn``."""
        return spawn_patch(per_process)

    def preflight(self, upstream_args: list, shims: bool, trust_pickle: bool, launcher: str) -> list:
        """Checks before anything heavy starts (``--resume`` trusted and intact, ``--gpus`` against the devices
        found); returns the arguments upstream's ``train.py`` gets."""
        check_resume(upstream_args, trust_pickle)
        check_gpus(upstream_args, shims)
        return upstream_args

    def start(self, train, upstream_args: list, launcher: str) -> None:
        """Run upstream's ``train.py`` main (a click command) with ``upstream_args``; override for another parser."""
        train.main(args=upstream_args, standalone_mode=False)

    @contextlib.contextmanager
    def _patched_upstream(self, repo, shims: bool, settings: DiffusionSettings, entry: bool, launcher: str):
        """Locate the checkout and import it (checking every name the adapter touches), warn once if its commit is
        untested, apply the entry patches (``entry``), the per-process patches here and in every rank upstream
        starts; yields upstream's ``train`` module, patched until the block ends."""
        path = locate_repo(self.upstream, repo)
        with patched_attributes(self.import_patches(shims)):
            modules = import_checked(self.upstream, path)
        warn_if_untested(self.upstream, path)
        per_process = functools.partial(_rank_patches, self, str(path), settings, shims)
        entry_patches = self.entry_patches(modules, settings) if entry else []
        with patched_attributes(entry_patches + per_process() + self.launch_patches(modules, per_process, launcher)):
            yield modules["train"]

    def patched(self, repo=None, shims: bool = False, launcher: str = "spawn", **settings):
        """Patch upstream for Diffusion-GAN while the block runs; yields upstream's ``train`` module."""
        return self._patched_upstream(repo, shims, self.settings(**settings), True, launcher)

    def baseline(self, repo=None, shims: bool = True, **settings):
        """Upstream as its users run it, with only the compatibility shims (which ``settings`` may configure,
        e.g. an offline backbone); yields upstream's ``train`` module. `bench upstream` times it against
        :meth:`patched`."""
        return self._patched_upstream(repo, shims, self.settings(**settings), False, "spawn")

    def run(self, upstream_args: list, repo=None, shims: bool = True, trust_pickle: bool = False,
            launcher: str = "spawn", **settings) -> None:
        """Check, then run upstream's ``train.py`` with ``upstream_args`` under :meth:`patched`.

        ``launcher="torchrun"`` (adapters that list it in ``launchers``): this process is one rank of
        a torchrun job (several nodes allowed); see :mod:`.launch`.
        """
        if launcher not in LAUNCHERS:
            raise ValueError(f"unknown launcher {launcher!r}; choose one of {', '.join(LAUNCHERS)}")
        if launcher not in self.launchers:
            raise UpstreamError(f"{self.name} starts upstream with --launcher {' or '.join(self.launchers)}, not "
                                f"{launcher}")
        upstream_args = [str(a) for a in upstream_args]
        self.settings(**settings)  # bad settings fail before the checks look at the machine
        upstream_args = self.preflight(upstream_args, shims=shims, trust_pickle=trust_pickle, launcher=launcher)
        with self.patched(repo, shims=shims, launcher=launcher, **settings) as train:
            self.start(train, upstream_args, launcher)


def _field(settings_class, name: str):
    return {f.name: f for f in dataclasses.fields(settings_class)}.get(name)


def check_contract(adapter) -> None:
    """Raise one line naming the first piece of :data:`CONTRACT` that ``adapter`` (a class or an instance) leaves out
    or gets wrong; return None when it keeps the contract."""
    cls = adapter if isinstance(adapter, type) else type(adapter)
    if not issubclass(cls, Adapter):
        raise TypeError(f"an adapter must subclass diffaug_noise.integrations.Adapter; got {cls.__name__}")
    name = getattr(cls, "name", None)
    label = f"adapter {name!r}" if isinstance(name, str) and name else f"adapter {cls.__name__}"
    for attribute, what in cls.contract.items():
        value = getattr(cls, attribute, None)
        if attribute in _METHODS:
            missing = value is getattr(Adapter, attribute)
        else:
            missing = value is None or (value == "" and attribute != "cpu_note")
        if missing:
            raise TypeError(f"{label} declares no {attribute}: {what}")
    wrong = _wrong_declaration(cls)
    if wrong:
        raise TypeError(f"{label}: {wrong}")


def _wrong_declaration(cls) -> str | None:
    """What is wrong with a declared piece of the contract, in words, or None."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", cls.name):
        return f"name must be a command name (lower-case letters, digits, '-'); got {cls.name!r}"
    for attribute in ("title", "description", "example", "cpu_note"):
        if not isinstance(getattr(cls, attribute), str):
            return f"{attribute} must be a string; got {getattr(cls, attribute)!r}"
    if not isinstance(cls.upstream, Upstream):
        return f"upstream must be an Upstream; got {type(cls.upstream).__name__}"
    settings = cls.settings_class
    if not (isinstance(settings, type) and issubclass(settings, DiffusionSettings)
            and dataclasses.is_dataclass(settings)):
        return f"settings_class must be a DiffusionSettings dataclass; got {settings!r}"
    preset = _field(settings, "preset")
    if preset is None or not preset.metadata.get("choices"):
        return f"settings_class {settings.__name__} needs a preset field listing its presets (knob(..., choices=...))"
    phases = cls.d_phases
    if not (isinstance(phases, tuple) and phases and all(isinstance(p, str) and p for p in phases)):
        return f"d_phases must be a non-empty tuple of phase names; got {phases!r}"
    if cls.t_input not in CONDITIONINGS and cls.t_input not in T_INPUTS:
        return f"t_input {cls.t_input!r} is none of {', '.join([*CONDITIONINGS, *T_INPUTS])}"
    if cls.signal not in SIGNALS:
        return f"signal {cls.signal!r} is none of {', '.join(SIGNALS)}"
    if cls.resume not in RESUMES:
        return f"resume {cls.resume!r} is none of {', '.join(RESUMES)}"
    if cls.resume == "snapshot progress" and _field(settings, "resume_progress") is None:
        return f"resume 'snapshot progress' needs a resume_progress knob in {settings.__name__} (TimestepLabelSettings)"
    unknown = set(cls.launchers) - set(LAUNCHERS)
    if unknown:
        return f"launchers {sorted(unknown)} are none of {', '.join(LAUNCHERS)}"
    return cls.declaration_error()


ADAPTERS = Registry("adapter", contract=check_contract)


def register(adapter) -> Adapter:
    """Check ``adapter`` (an :class:`Adapter` subclass or an instance of one) against the contract and add it to
    :data:`ADAPTERS` under its name (once); returns the registered instance."""
    check_contract(adapter)
    instance = adapter() if isinstance(adapter, type) else adapter
    return ADAPTERS.register(instance.name, instance)


__all__ = ["ADAPTERS", "CONTRACT", "RESUMES", "T_INPUTS", "Adapter", "UpstreamError", "check_contract", "register"]
