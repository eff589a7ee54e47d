"""The digits study: tuning on held-out seeds, the choice rule, the report, and sizing a run to a time budget."""
import statistics

import pytest

from diffaug_noise.demos.digits.study import (
    CONV_GRID,
    Job,
    StudySettings,
    calibrated_iterations,
    choose,
    format_study,
    report_jobs,
    run_study,
    schedule_seconds,
    step_costs,
    tuning_jobs,
)


def test_settings_refuse_unequal_effort_and_reported_tuning_seeds():
    with pytest.raises(ValueError, match="same number"):
        StudySettings(methods=("plain", "instance", "diffusion"),
                      grid={"instance": CONV_GRID["instance"], "diffusion": CONV_GRID["diffusion"][:2]})
    with pytest.raises(ValueError, match="overlap"):
        StudySettings(tune_seeds=(0, 1), report_seeds=(1, 2))


def test_jobs_cover_every_candidate_on_tuning_seeds_and_every_method_on_report_seeds_in_chunks():
    settings = StudySettings(train_sizes=(100, 500), tune_seeds=(100, 101), report_seeds=tuple(range(7)),
                             seeds_per_job=3)
    tuning = tuning_jobs(settings)
    assert len(tuning) == 2 * 5 * 3 and all(j.seeds == (100, 101) and j.method != "plain" for j in tuning)
    chosen = {size: {m: dict(CONV_GRID[m][0]) for m in CONV_GRID} | {"plain": {}} for size in ("100", "500")}
    report = report_jobs(settings, chosen)
    assert len(report) == 2 * 6 * 3  # chunks of 3, 3 and 1 seeds
    for size in (100, 500):
        for method in settings.methods:
            seeds = sorted(s for j in report if j.train_size == size and j.method == method for s in j.seeds)
            assert seeds == list(range(7))
    job = Job("report", 100, "instance", (("instance_sigma", 0.6),), (0, 1))
    config = job.config(dict(net="conv", resolution=16))
    assert (config.train_size, config.methods, config.seeds, config.instance_sigma) == (100, ("instance",), (0, 1), 0.6)


def _tuned(method, setting, scores, size=100):
    return {"job": {"train_size": size, "method": method, "setting": tuple(sorted(setting.items())), "phase": "tuning"},
            "result": {"runs": [{"score": s} for s in scores]}}


def test_the_choice_is_the_lowest_median_final_score_ties_to_the_lower_maximum():
    outputs = [_tuned("instance", {"instance_sigma": 0.15}, [3.0, 9.0, 2.0]),
               _tuned("instance", {"instance_sigma": 0.3}, [3.0, 4.0, 1.0]),  # same median, lower maximum
               _tuned("instance", {"instance_sigma": 0.6}, [3.5, 3.5, 3.5]),
               _tuned("diffusion", {"sigma": 0.5}, [5.0, 5.0]), _tuned("diffusion", {"sigma": 0.25}, [4.0, 6.5])]
    chosen = choose(outputs)
    assert chosen == {"100": {"instance": {"instance_sigma": 0.3}, "diffusion": {"sigma": 0.5}}}


def test_schedule_is_longest_first_on_the_first_free_worker():
    assert schedule_seconds([5.0, 1.0, 1.0, 1.0, 1.0, 1.0], workers=2) == 5.0
    assert schedule_seconds([3.0, 3.0, 2.0, 2.0, 2.0], workers=2) == 7.0
    assert schedule_seconds([1.0] * 5, workers=1) == 5.0


def test_step_costs_separate_start_up_iterations_and_evaluations():
    # started at 0, first step done at 2 s; then steps of 0.1 s, and every 4th step (an evaluation) 0.6 s
    stamps, now = [2.0], 2.0
    for step in range(2, 25):
        now += 0.6 if step % 4 == 0 else 0.1
        stamps.append(now)
    costs = step_costs({"stamps": stamps, "started": 0.0}, eval_every=4)
    assert costs["startup"] == 2.0
    assert costs["iteration"] == pytest.approx(0.1) and costs["evaluation"] == pytest.approx(0.5)


def test_calibration_picks_the_longest_run_that_fits_and_refuses_a_budget_too_small():
    costs = [{"phase": "tuning", "startup": 1.0, "iteration": 0.01, "evaluation": 0.5},
             {"phase": "report", "startup": 2.0, "iteration": 0.02, "evaluation": 1.0}]
    # one worker: 1 + 0.01 n + 0.5 n/250 + 2 + 0.02 n + n/250 = 3 + 0.036 n; 100 s -> n <= 2694 -> 2500
    n, estimate = calibrated_iterations(costs, 1, 100.0, 250, 500, 10_000)
    assert n == 2500 and estimate == pytest.approx(3 + 0.036 * 2500)
    assert calibrated_iterations(costs, 1, 1000.0, 250, 500, 10_000)[0] == 10_000  # the ceiling
    with pytest.raises(ValueError, match="over the budget"):
        calibrated_iterations(costs, 1, 10.0, 250, 500, 10_000)


def test_a_study_reports_the_tuned_setting_on_seeds_tuning_never_saw():
    settings = StudySettings(train_sizes=(30,), tune_seeds=(100, 101), report_seeds=(0, 1), iterations=6,
                             methods=("plain", "instance"), workers=0,
                             grid={"instance": ({"instance_sigma": 0.05}, {"instance_sigma": 1.5})})
    study = run_study(settings, dict(net="conv", resolution=16, width=2, eval_every=3, eval_samples=20, batch_size=8))
    tuning = study["tuning"]["30"]["runs"]
    assert {r["seed"] for r in tuning} == {100, 101}
    by_sigma = {}
    for run in tuning:
        by_sigma.setdefault(run["setting"]["instance_sigma"], []).append(run["score"])
    best = min(by_sigma, key=lambda s: (statistics.median(by_sigma[s]), max(by_sigma[s])))
    assert study["chosen"]["30"]["instance"] == {"instance_sigma": best}
    report = study["report"]["30"]["runs"]
    assert sorted((r["method"], r["seed"]) for r in report) == [("instance", 0), ("instance", 1), ("plain", 0),
                                                               ("plain", 1)]
    assert all(r["setting"] == {"instance_sigma": best} for r in report if r["method"] == "instance")
    table = format_study(study)
    assert f"**instance_sigma={best:g}**" in table and "6 iterations" in table
