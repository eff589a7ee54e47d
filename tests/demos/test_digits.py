"""The digits main job: dataset split, FD_digits (Fréchet distance, classifier, torch-fidelity extractor), the run end
to end."""
import json
import zipfile

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from diffaug_noise.cli.main import main
from diffaug_noise.data import DatasetError, prepare
from diffaug_noise.data.digits import load_digits, stratified_subset, to_uint8
from diffaug_noise.demos.digits import DigitsSettings, load_classifier, train_classifier, train_digits
from diffaug_noise.metrics import digits_classifier as classifier_module
from diffaug_noise.metrics.frechet import feature_statistics, frechet_distance
from helpers import fid_reference

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """One data root (and so one cached classifier) for the module."""
    return tmp_path_factory.mktemp("digits-data")


@pytest.fixture(autouse=True)
def _data_root_env(data_root, monkeypatch):
    monkeypatch.setenv("DIFFAUG_NOISE_DATA", str(data_root))


@pytest.fixture(scope="module")
def digits():
    return load_digits()


@pytest.fixture(scope="module")
def classifier(data_root):
    return load_classifier(cache_dir=data_root)


def score(net, images, reference):
    return frechet_distance(feature_statistics(net.features(to_uint8(images))),
                            feature_statistics(net.features(to_uint8(reference))))


def test_digits_are_scikit_learns_scaled_to_unit_range(digits):
    from sklearn.datasets import load_digits as sklearn_digits

    images, labels = digits
    raw = sklearn_digits()
    assert images.shape == (1797, 1, 8, 8) and images.dtype == torch.float32
    np.testing.assert_allclose(images.squeeze(1).numpy(), raw.images / 8.0 - 1.0, atol=1e-6)
    assert labels.tolist() == raw.target.tolist()
    up, _ = load_digits(resolution=32)
    assert up.shape == (1797, 1, 32, 32)
    # bilinear, pixel centres aligned: output pixel i samples the input at (i + 0.5) / 4 - 0.5
    torch.testing.assert_close(up[:, :, 0, 0], images[:, :, 0, 0])
    w = torch.tensor([0.875, 0.125])  # output 6 -> input 1.125
    torch.testing.assert_close(up[:, 0, 6, 6], torch.einsum("i,nij,j->n", w, images[:, 0, 1:3, 1:3], w))
    with pytest.raises(DatasetError, match=r"resolution must be an int >= 8; got 4"):
        load_digits(resolution=4)


@pytest.mark.parametrize("size", [10, 200, 205, 1000])
def test_stratified_subset_is_balanced_seeded_and_sorted(digits, size):
    _, labels = digits
    subset = stratified_subset(labels, size, seed=3)
    counts = torch.bincount(labels[subset], minlength=10)
    assert len(subset) == len(set(subset.tolist())) == size
    assert counts.max() - counts.min() <= 1 and int(counts.min()) == size // 10
    assert subset.tolist() == sorted(subset.tolist())
    assert torch.equal(subset, stratified_subset(labels, size, seed=3))
    if size < 1000:
        assert not torch.equal(subset, stratified_subset(labels, size, seed=4))


def test_stratified_subset_refuses_impossible_sizes(digits):
    _, labels = digits
    with pytest.raises(DatasetError, match=r"between 10 and 1797 .* got 9"):
        stratified_subset(labels, 9, seed=0)
    with pytest.raises(DatasetError, match=r"asks for \d+ images of digit \d, which has \d+"):
        stratified_subset(labels, 1797, seed=0)  # classes differ in size: 1797 cannot be balanced


def test_data_prepare_digits_needs_no_source_and_keeps_labels(tmp_path):
    report = prepare("digits", None, out=tmp_path / "digits.zip")
    assert report.images == 1797 and report.resolution == 8
    with zipfile.ZipFile(report.path) as z:
        labels = json.loads(z.read("dataset.json"))["labels"]
        assert z.read(labels[0][0])[:8] == PNG_MAGIC
    assert [label for _, label in labels] == load_digits()[1].tolist()
    assert prepare("digits", None, out=tmp_path / "digits.zip").up_to_date
    with pytest.raises(DatasetError, match="needs its downloaded source: pass --source PATH"):
        prepare("cifar10", None, out=tmp_path / "c.zip")


def test_frechet_distance_matches_scipy_on_random_features():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(500, 6, generator=g, dtype=torch.float64) @ torch.randn(6, 6, generator=g, dtype=torch.float64)
    b = torch.randn(400, 6, generator=g, dtype=torch.float64) * 2 + 1
    ours = frechet_distance(feature_statistics(a), feature_statistics(b))
    assert ours == pytest.approx(fid_reference(a.numpy(), b.numpy()), rel=1e-9)
    with pytest.raises(ValueError, match=r"features must have shape \[N >= 2, F\]; got \(1, 6\)"):
        feature_statistics(a[:1])


def test_classifier_generalises_and_is_deterministic_whatever_the_thread_count(digits):
    images, labels = digits
    train = stratified_subset(labels, 900, seed=0)
    held_out = torch.ones(len(labels), dtype=torch.bool)
    held_out[train] = False
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        net = train_classifier(images[train], labels[train], seed=0)
        torch.set_num_threads(1)
        again = train_classifier(images[train], labels[train], seed=0)
    finally:
        torch.set_num_threads(threads)
    accuracy = (net(images[held_out]).argmax(1) == labels[held_out]).float().mean()
    assert accuracy > 0.95
    for p, q in zip(net.state_dict().values(), again.state_dict().values()):
        assert torch.equal(p, q)


def test_fd_digits_sanity_real_halves_near_zero_damaged_digits_far(digits, classifier):
    images, labels = digits
    half = stratified_subset(labels, 890, seed=1)
    rest = torch.ones(len(labels), dtype=torch.bool)
    rest[half] = False
    near = score(classifier, images[half], images[rest])
    padded = torch.nn.functional.pad(images, (1, 1, 1, 1), mode="replicate")
    blurred = torch.nn.functional.avg_pool2d(padded, 3, stride=1)
    shuffled = images.flatten(1)[:, torch.randperm(64, generator=torch.Generator().manual_seed(0))].view_as(images)
    uniform = torch.rand(1797, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    one_class = images[labels == 3]
    assert near < 1.0
    for damaged in (blurred, shuffled, uniform, one_class):
        assert score(classifier, damaged, images) > 20 * max(near, 0.5)


def test_classifier_cache_is_reused_and_a_truncated_one_is_retrained(tmp_path, monkeypatch):
    first = load_classifier(cache_dir=tmp_path)
    path = classifier_module.cache_path(0, tmp_path)
    assert path.is_file()

    def no_training(*args, **kwargs):
        raise AssertionError("retrained although the cache is valid")

    monkeypatch.setattr(classifier_module, "train_classifier", no_training)
    cached = load_classifier(cache_dir=tmp_path)
    for p, q in zip(first.state_dict().values(), cached.state_dict().values()):
        assert torch.equal(p, q)
    monkeypatch.undo()
    path.write_bytes(path.read_bytes()[:100])
    rebuilt = load_classifier(cache_dir=tmp_path)
    for p, q in zip(first.state_dict().values(), rebuilt.state_dict().values()):
        assert torch.equal(p, q)
    assert len(path.read_bytes()) > 100


def invoke(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def short_run(tmp_path_factory, data_root):
    out = tmp_path_factory.mktemp("digits-run")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DIFFAUG_NOISE_DATA", str(data_root))
        result = invoke("run", "digits", "--outdir", str(out), "--iterations", "60", "--eval-every", "20", "--seeds",
                        "2",
                        "--methods", "plain,instance,diffusion,diffusion-fixed", "--fixed-T", "50", "--save-samples")
    return result, out


def test_run_digits_writes_metrics_plots_and_samples(short_run):
    result, out = short_run
    assert result.exit_code == 0, result.output
    for method in ("plain", "instance", "diffusion", "diffusion-fixed"):
        assert method in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) >= {"config", "wall_seconds", "runs", "summary", "history", "environment"}
    assert len(metrics["runs"]) == 8
    for run in metrics["runs"]:
        assert {"method", "seed", "score", "best_score", "classes_covered", "final_T", "max_T", "seconds"} <= set(run)
        assert 0 < run["best_score"] <= run["score"] and 0 <= run["classes_covered"] <= 10
        assert sum(run["class_shares"]) == pytest.approx(1.0, abs=1e-3)
        if run["method"] == "diffusion":
            assert 10 <= run["final_T"] <= run["max_T"] <= 1000
        elif run["method"] == "diffusion-fixed":
            assert run["final_T"] == run["max_T"] == 50
        else:
            assert run["final_T"] is None and run["max_T"] is None
    history = metrics["history"]
    assert history["score_iteration"] == [20, 40, 60] and history["iteration"][-1] == 60
    assert set(history["T"]) == {f"{m}/seed{s}" for m in ("diffusion", "diffusion-fixed") for s in (0, 1)}
    assert len(history["r_d"]) == 8 and all(-1 <= v <= 1 for values in history["r_d"].values() for v in values)
    for png in ("samples.png", "training.png"):
        assert (out / png).read_bytes()[:8] == PNG_MAGIC
    assert len(list((out / "samples").glob("*.zip"))) == 8
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


def test_a_run_does_not_depend_on_the_other_methods_beside_it(data_root):
    """Same data, latents and initial weights per seed whatever else trains in the batch."""

    settings = dict(iterations=30, eval_every=10, seeds=(1,), eval_samples=300)
    alone = train_digits(DigitsSettings(methods=("diffusion",), **settings), classifier_cache=data_root)
    beside = train_digits(DigitsSettings(methods=("plain", "diffusion"), **settings), classifier_cache=data_root)
    torch.testing.assert_close(alone["history"]["score"]["diffusion/seed1"],
                               beside["history"]["score"]["diffusion/seed1"], rtol=1e-3, atol=0)
    assert alone["history"]["T"]["diffusion/seed1"] == beside["history"]["T"]["diffusion/seed1"]
    assert beside["history"]["score"]["plain/seed1"] != beside["history"]["score"]["diffusion/seed1"]


def test_eval_with_the_digits_extractor_reproduces_the_runs_score(short_run, data_root):
    pytest.importorskip("torch_fidelity")
    _, out = short_run
    metrics = json.loads((out / "metrics.json").read_text())
    run = next(r for r in metrics["runs"] if r["method"] == "instance" and r["seed"] == 1)
    prepare("digits", None, data_root=data_root)
    json_path = out / "eval.json"
    result = invoke("eval", "--real", "digits", "--fake", str(out / "samples" / "instance-seed1.zip"),
                    "--feature-extractor", "digits-classifier", "--metrics", "fid,kid", "--json", str(json_path))
    assert result.exit_code == 0, result.output
    saved = json.loads(json_path.read_text())
    assert saved["num_fake"] == 2000 and saved["num_real"] == 1797
    assert saved["fid"] == pytest.approx(run["score"], rel=1e-4)
    assert saved["kid"] > 0


def test_bad_settings_fail_with_one_line(tmp_path):
    result = CliRunner().invoke(main, ["run", "digits", "--out", str(tmp_path), "--methods", "plain,gan"])
    assert result.exit_code == 2 and "unknown method(s) ['gan']" in result.output
    result = CliRunner().invoke(main, ["run", "digits", "--out", str(tmp_path), "--fixed-T", "2000"])
    assert result.exit_code == 2 and "--fixed-T 2000 exceeds --t-max 1000" in result.output
    with pytest.raises(ValueError, match="unknown conditioning 'adain'"):
        DigitsSettings(conditioning="adain")


def test_the_result_so_far_arrives_at_each_evaluation_and_the_last_is_the_return_value(data_root):
    seen = []
    config = DigitsSettings(methods=("plain", "diffusion"), iterations=30, eval_every=10, seeds=(1,), eval_samples=300)
    final = train_digits(config, classifier_cache=data_root, on_eval=seen.append)
    assert [r["history"]["score_iteration"] for r in seen] == [[10], [10, 20]]  # the one at 30 is `final`
    for result in seen:  # each as complete as a finished run's, from the scores logged so far
        assert [run["score"] for run in result["runs"]] == [v[-1] for v in result["history"]["score"].values()]
    assert final["history"]["score"]["plain/seed1"][:2] == seen[-1]["history"]["score"]["plain/seed1"]


def test_run_digits_writes_its_plots_at_each_evaluation(tmp_path, monkeypatch):
    from diffaug_noise.cli import plots

    written = []
    for name in ("digits_samples", "digits_training"):
        original = getattr(plots, name)
        monkeypatch.setattr(plots, name, lambda plt, result, path, _o=original: written.append(
            (path.name, result["history"]["score_iteration"][-1])) or _o(plt, result, path))
    result = CliRunner().invoke(main, ["run", "digits", "--seeds", "1", "--methods", "plain", "--iterations", "30",
                                       "--eval-every", "10", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert written == [(png, step) for step in (10, 20, 30) for png in ("samples.png", "training.png")]
    assert (tmp_path / "training.png").read_bytes()[:8] == PNG_MAGIC
