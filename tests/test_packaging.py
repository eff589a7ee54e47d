"""Dependency direction and import weight of the core package."""
import os
import pathlib
import re
import subprocess
import sys

import pytest
import torch

import diffaug_noise as dn

CORE = pathlib.Path(dn.__file__).parent


def test_importing_the_core_pulls_in_no_cli_plotting_or_metrics_packages():
    code = ("import sys, diffaug_noise, diffaug_noise.demos.toy, diffaug_noise.demos.digits, diffaug_noise.data, "
            "diffaug_noise.checkpoint; bad = [m for m in ('click', 'matplotlib', 'torch_fidelity', 'lmdb', 'PIL', "
            "'sklearn', 'triton', 'diffaug_noise.cli', 'diffaug_noise.integrations') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_core_sources_never_import_integrations_or_cli():
    pattern = re.compile(r"^\s*(from|import)\s+(diffaug_noise\.)?(integrations|cli)\b"
                         r"|^\s*from\s+\.+(integrations|cli)\b", re.M)
    offenders = [str(p) for p in CORE.rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []


DEMOS = sorted(p.name for p in (CORE / "demos").iterdir() if (p / "__init__.py").is_file())


def imported_modules(path: pathlib.Path) -> set:
    """Every module ``path`` imports, absolute (relative imports resolved against its package)."""
    import ast

    package = ".".join(path.relative_to(CORE.parent).with_suffix("").parts[:-1])
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(p for p in (base, node.module) if p)
            names |= {module} | {f"{module}.{alias.name}" for alias in node.names}
    return names


def test_the_metrics_import_no_demo_and_no_demo_imports_another():
    assert {"digits", "guidance", "toy"} <= set(DEMOS)  # the demos are found
    for path in (CORE / "metrics").rglob("*.py"):
        assert not any(m.startswith("diffaug_noise.demos") for m in imported_modules(path)), path
    for demo in DEMOS:
        others = tuple(f"diffaug_noise.demos.{other}" for other in DEMOS if other != demo)
        for path in (CORE / "demos" / demo).rglob("*.py"):
            assert not [m for m in imported_modules(path) if m.startswith(others)], path


def test_cli_and_integrations_ship_inside_the_distribution():
    import diffaug_noise.cli.main
    import diffaug_noise.integrations

    assert pathlib.Path(diffaug_noise.cli.main.__file__).parent.name == "cli"
    assert pathlib.Path(diffaug_noise.integrations.__file__).parent.name == "integrations"


@pytest.mark.gpu
def test_forward_and_observe_make_no_host_sync():
    noise = dn.DiffusionNoise(p=0.5).cuda()
    ctrl = dn.AdaptiveController(noise, interval=1000, batch_size=64)
    x = torch.randn(64, 3, 32, 32, device="cuda")
    noise(x)  # warm-up
    torch.cuda.set_sync_debug_mode("error")
    try:
        y, t = noise(x)
        ctrl.observe(y.mean(dim=(1, 2, 3)))
        ctrl.update()  # not an adjustment step
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_every_package_directory_is_listed_in_pyproject():
    """A non-editable install ships only the packages pyproject.toml lists."""
    import tomllib

    root = CORE.parent
    config = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    dirs = {name: root / path for name, path in config["package-dir"].items()}
    found = set()
    for name, path in dirs.items():
        for init in path.rglob("__init__.py"):
            rel = init.parent.relative_to(path).parts
            found.add(".".join((name,) + rel))
    assert found == set(config["packages"])


BLOCK = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == {blocked!r}:
            raise ImportError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, Block())
sys.argv = ["diffaug-noise", *{argv!r}]
from diffaug_noise.cli import run
run()
"""


@pytest.mark.parametrize("blocked, argv, extra", [
    ("click", ["--help"], "cli"),
    ("torch_fidelity", ["eval", "--real", "digits", "--fake", "."], "eval"),
    ("sklearn", ["run", "digits", "--steps", "1", "--out", "{tmp}"], "digits"),
])
def test_a_missing_extra_is_one_line_naming_the_install(blocked, argv, extra, tmp_path):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    env = {**__import__("os").environ, "DIFFAUG_NOISE_DATA": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", BLOCK.format(blocked=blocked, argv=argv)], capture_output=True,
                            text=True, env=env, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].endswith(f"pip install 'diffaug-noise[{extra}]'"), result.stderr


@pytest.mark.parametrize("first, preset, expected", [("", None, "PASSIVE"), ("", "ACTIVE", "ACTIVE"),
                                                     ("import torch; ", None, "None")])
def test_importing_the_library_first_makes_openmps_idle_threads_sleep(first, preset, expected):
    """Spinning threads cost 5-20x on a shared CPU (docs/performance.md); a user's own setting wins, and once torch
    has loaded OpenMP the setting would do nothing, so none is made."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if preset:
        env["OMP_WAIT_POLICY"] = preset
    code = f"{first}import os, diffaug_noise; print(os.environ.get('OMP_WAIT_POLICY'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.strip() == expected


# The package's modules as the distribution maps them (pyproject's package-dir).
SOURCES = {"diffaug_noise": CORE, "diffaug_noise.integrations": CORE.parent / "integrations",
           "diffaug_noise.cli": CORE.parent / "cli"}


def _module_files() -> dict:
    found = {}
    for package, folder in SOURCES.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            parts = parts[:-1] if parts[-1] == "__init__" else parts
            found[".".join([package, *parts])] = path
    return found


def import_graph() -> dict:
    """module -> the package's modules it imports anywhere in its source (function-level imports too)."""
    import ast

    files = _module_files()
    graph = {}
    for name, path in files.items():
        here = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = ".".join(here.split(".")[:len(here.split(".")) - node.level + 1]) if node.level else ""
                target = ".".join(p for p in (base, node.module or "") if p)
                subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in files]
                edges.update(subs + ([target] if len(subs) < len(node.names) else []))
            elif isinstance(node, ast.Import):
                edges.update(a.name for a in node.names)
        graph[name] = {e for e in edges if e in files and e != name}
    return graph


def cycles(graph: dict) -> list:
    """The strongly connected components of more than one module (Tarjan's algorithm, iteratively).

    Example: a -> b -> a, b -> c gives one component, {a, b}.
    """
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], [0]

    def visit(root):
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(component)
            elif child not in index:
                index[child] = low[child] = counter[0]
                counter[0] += 1
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"a", "c"}, "c": set()}) == [{"a", "b"}]


def test_the_package_import_graph_has_no_circle():
    graph = import_graph()
    assert "diffaug_noise.data.sources" in graph["diffaug_noise.data.datasets"]  # the graph sees real edges
    assert cycles(graph) == []
