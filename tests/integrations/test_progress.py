"""The resumable loop: upstream's own function, recompiled so that its counters can start where a snapshot left off."""
import importlib.util
import traceback

import pytest

from diffaug_noise.integrations import UpstreamError
from diffaug_noise.integrations.progress import progress_at, resumable_loop

LOOP = '''
def training_loop(batch_size=4, total=12, fail_at=None):
    """Upstream's docstring."""
    cur_nimg = 0
    cur_tick = 0
    tick_start_nimg = cur_nimg
    batch_idx = 0
    seen = []
    while cur_nimg < total:
        cur_nimg += batch_size
        batch_idx += 1
        if cur_nimg == fail_at:
            raise RuntimeError("upstream failed here")
        seen.append((cur_nimg, cur_tick, batch_idx, tick_start_nimg))
        cur_tick += 1
    return seen
'''


def load(tmp_path, source, name="loop"):
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, path


def test_the_counters_start_where_asked_and_everything_else_is_upstreams(tmp_path):
    module, path = load(tmp_path, LOOP)
    resumable = resumable_loop(module.training_loop)
    assert resumable() == module.training_loop()  # no resume_progress: upstream's behaviour
    assert resumable(resume_progress={"cur_nimg": 4, "cur_tick": 7, "batch_idx": 1}) == [(8, 7, 2, 4), (12, 8, 3, 4)]
    assert resumable(resume_progress={"cur_nimg": 8}) == [(12, 0, 1, 8)]  # the others keep upstream's values
    assert resumable.__doc__ == "Upstream's docstring." and resumable.__globals__ is module.__dict__
    with pytest.raises(RuntimeError) as failure:
        resumable(fail_at=8)
    where = traceback.extract_tb(failure.tb)[-1]
    assert (where.filename, where.lineno) == (str(path), 13)  # upstream's file and line


@pytest.mark.parametrize("change, count", [("    batch_idx = 0\n", 0), ("    cur_tick = 0\n", 2)])
def test_a_loop_that_does_not_assign_a_counter_once_is_refused(tmp_path, change, count):
    source = LOOP.replace(change, "") if count == 0 else LOOP.replace(change, change * 2)
    module, _ = load(tmp_path, source, name=f"loop{count}")
    name = change.split()[0]
    with pytest.raises(UpstreamError, match=f"assigns {name} {count} times"):
        resumable_loop(module.training_loop)


def test_progress_at_follows_upstreams_tick_rule():
    # Tick 0 is the first iteration; later ticks end at the first iteration with cur_nimg >= start + kimg_per_tick *
    # 1000.
    assert progress_at(4, 4, 0.008) == {"cur_nimg": 4, "cur_tick": 1, "batch_idx": 1}
    assert progress_at(12, 4, 0.008)["cur_tick"] == 2
    assert [progress_at(n, 4, 0.016)["cur_tick"] for n in (4, 20, 36)] == [1, 2, 3]
    # In floats 1 + 2.007 * 1000 is 2008.0000000000002 but 2009 + 2.007 * 1000 is 4016.0: at 1 image a step,
    # upstream's tick 1 ends at 2009 and tick 2 at 4016; so do these.
    assert [progress_at(n, 1, 2.007)["cur_tick"] for n in (1, 2008, 2009, 4016)] == [1, 2, 2, 3]
    assert progress_at(4017, 1, 2.007)["cur_tick"] == 4
    assert progress_at(30, 4, 0.008) == {"cur_nimg": 30, "cur_tick": 5, "batch_idx": 7}  # a run that ended off the grid
