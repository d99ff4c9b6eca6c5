"""`explain_file`: one WAV through a checkpointed detector (dense_ae trained one epoch) and an explainer."""
import json

import numpy as np
import pytest
import soundfile as sf
import torch

import tests.engine_plugins  # noqa: F401  (registers test-blobs, test-template, test-band-mass)
from benchmark.cells import expand
from benchmark.dataset import load_table
from benchmark.detector import Budget
from benchmark.errors import BenchmarkError
from benchmark.executors import LocalExecutor
from benchmark.explain_one import (
    clip_samples,
    explain_clip,
    explain_file,
    interpreter_state,
    load_detector,
    spec_for,
)
from benchmark.explainer import Explainer
from benchmark.features import LogMel, preset
from benchmark.registry import explainers, registry
from benchmark.runner import run_suite
from benchmark.suites import load_suite
from benchmark.types import Explanation

SPEC = preset("dcase").with_duration(2.0)  # 128 x 63
GRID = SPEC.grid
TONE_HZ, WAV_RATE, WAV_SECONDS = 1000.0, 22050, 1.5
TRAINED_SUITE = """
name = "explain-trained"
seeds = [0]
metrics = ["test-band-mass"]
[evaluate]
max_clips = 2
batch_size = 2
[datasets.test-blobs]
[detectors.test-template]
[explainers.test-explain-trained]
"""


class HalfInput(Explainer):
    def explain(self, detector, batch, *, generator):
        return Explanation(attribution=batch.x[:, 0].exp(), audio=0.5 * batch.waveform)


class LearntLevel(Explainer):
    trains = True

    def __init__(self):
        super().__init__()
        self.level = None

    def fit(self, detector, train, *, seed, budget):
        self.level = train.x[:, 0].mean(dim=(0, 2))
        return {"bands": len(self.level)}

    def state_dict(self):
        return {"level": self.level}

    def load_state_dict(self, state):
        self.level = state["level"]

    def explain(self, detector, batch, *, generator):
        n_frames = batch.x.shape[-1]
        return Explanation(attribution=self.level.to(batch.x.device)[None, :, None].expand(len(batch), -1, n_frames))


TEST_EXPLAINERS = {"test-explain-audio": (HalfInput, "explain tests: half the input as a listenable explanation"),
                   "test-explain-trained": (LearntLevel, "explain tests: a learnt per-band level")}


@pytest.fixture(scope="module", autouse=True)
def test_explainers():
    """Registered for this module only, so no other test's suite or conformance run meets them."""
    for name, (factory, summary) in TEST_EXPLAINERS.items():
        explainers.register(name, summary=summary, version=1)(factory)
    yield
    for name in TEST_EXPLAINERS:
        explainers._plugins.pop(name)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run folder with one finished dense_ae train cell (one epoch on noise) and a stereo 22.05 kHz tone."""
    root = tmp_path_factory.mktemp("explain")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(12, 1, *GRID, generator=g) * 5 - 40
    det = registry("detector").make("dense_ae", hidden=32, bottleneck=4)
    det.build(GRID, 1)
    det.remember_normals(x[:10])
    det.fit(x[:10], x[10:], train_groups=torch.zeros(10, dtype=torch.long), val_groups=torch.zeros(2, dtype=torch.long),
            seed=0, budget=Budget(epochs=1, batch_size=5))
    det.eval()
    with torch.no_grad():
        det.calibrate(det.score(x[10:]))
    key = "a" * 20
    (root / "cells" / key).mkdir(parents=True)
    (root / "cells" / key / "cell.json").write_text(json.dumps(
        {"status": "done", "cell": "train", "dataset": "toy", "detector": "dense_ae", "seed": 0}))
    (root / "checkpoints").mkdir()
    torch.save({"state": det.state_dict(), "grid": list(GRID), "n_groups": 1, "detector": "dense_ae",
                "params": {"hidden": 32, "bottleneck": 4}, "spec": SPEC.to_dict()}, root / "checkpoints" / f"{key}.pt")
    t = np.arange(int(WAV_SECONDS * WAV_RATE)) / WAV_RATE
    stereo = np.stack([0.5 * np.sin(2 * np.pi * TONE_HZ * t), np.zeros_like(t)], axis=1)
    sf.write(str(root / "tone.wav"), stereo, WAV_RATE)
    return root, root / "checkpoints" / f"{key}.pt"


def test_clip_is_resampled_downmixed_and_padded_onto_the_grid(run_dir):
    root, ckpt_path = run_dir
    ckpt = torch.load(ckpt_path, weights_only=False)
    det = load_detector(ckpt, "dense_ae", torch.device("cpu"))
    ex = registry("explainer").make("error_map")
    ex.bind(SPEC, torch.device("cpu"))
    clip = explain_clip(root / "tone.wav", det, ex, name="error_map", spec=spec_for(ckpt), grid=GRID,
                        device=torch.device("cpu"))
    assert clip.batch.x.shape == (1, 1, *GRID) and clip.batch.waveform.shape == (1, SPEC.n_samples)
    wave = clip.batch.waveform[0]
    # 1.5 s of a 1 kHz tone downmixed from (0.5 sin, 0): amplitude 0.25 at 16 kHz, then zeros to 2 s
    assert wave[:int(1.4 * SPEC.sample_rate)].abs().max() == pytest.approx(0.25, abs=0.01)
    assert wave[int(1.51 * SPEC.sample_rate):].abs().max() == 0
    edges = SPEC.mel_band_edges_hz()
    loudest = int(clip.batch.x[0, 0, :, 5:40].mean(dim=1).argmax())
    assert edges[loudest, 0] < TONE_HZ < edges[loudest, 1]
    assert torch.allclose(clip.batch.x, LogMel(SPEC)(clip.batch.waveform))
    # the error map is exactly the squared reconstruction error of the loaded detector
    with torch.no_grad():
        expected = (det.reconstruct(clip.batch.x) - clip.batch.x)[:, 0] ** 2
    assert torch.allclose(clip.explanation.attribution, expected)
    assert clip.score == pytest.approx(float(det.score(clip.batch.x)[0]), rel=1e-6)


def test_explain_file_from_checkpoint_and_from_suite_run(run_dir, tmp_path):
    root, ckpt_path = run_dir
    a = explain_file(root / "tone.wav", detector="dense_ae", explainer="error_map", checkpoint=ckpt_path,
                     out=tmp_path / "a", device="cpu")
    b = explain_file(root / "tone.wav", detector="dense_ae", explainer="error_map", suite_run=root,
                     out=tmp_path / "b", device="cpu")
    assert [p.name for p in a] == [p.name for p in b] == ["tone-dense_ae-error_map.png"]
    assert a[0].read_bytes() == b[0].read_bytes()  # the same detector, clip and explanation
    assert a[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_listenable_explanations_are_written_at_the_grid_rate(run_dir, tmp_path):
    root, ckpt_path = run_dir
    paths = explain_file(root / "tone.wav", detector="dense_ae", explainer="test-explain-audio",
                         checkpoint=ckpt_path, out=tmp_path, device="cpu")
    assert [p.name for p in paths] == ["tone-dense_ae-test-explain-audio.png",
                                       "tone-dense_ae-test-explain-audio.explanation.wav"]
    audio, rate = sf.read(str(paths[1]))
    assert rate == SPEC.sample_rate and len(audio) == SPEC.n_samples
    assert np.abs(audio[: SPEC.sample_rate]).max() == pytest.approx(0.125, abs=0.005)


def test_trained_explainers_load_what_the_suite_run_learnt(run_dir, tmp_path):
    root, ckpt_path = run_dir
    suite_file = tmp_path / "t.toml"
    suite_file.write_text(TRAINED_SUITE)
    suite = load_suite(str(suite_file))
    run_suite(suite, out=tmp_path / "runs", device=torch.device("cpu"), executor=LocalExecutor(), progress="off")
    train_key = expand(suite)[0][0].key
    state = interpreter_state(tmp_path / "runs", train_key, "test-explain-trained", torch.device("cpu"))
    train = load_table(registry("dataset").make("test-blobs"), "train")
    assert torch.allclose(state["level"], train.x[train.labels == 0][:, 0].mean(dim=(0, 2)))
    paths = explain_file(root / "tone.wav", detector="test-template", explainer="test-explain-trained",
                         suite_run=tmp_path / "runs", out=tmp_path / "out", device="cpu")
    assert [p.name for p in paths] == ["tone-test-template-test-explain-trained.png"]
    with pytest.raises(BenchmarkError, match="learns from the training clips: use --suite-run"):
        explain_file(root / "tone.wav", detector="dense_ae", explainer="test-explain-trained", checkpoint=ckpt_path,
                     out=tmp_path / "out")


def test_spec_of_old_checkpoints_follows_the_grid():
    planer = spec_for({"grid": [80, 401]})
    assert planer.sample_rate == 20000 and planer.n_mels == 80 and clip_samples(planer, 401) == planer.n_samples
    dcase = spec_for({"grid": [128, 63]})
    assert dcase.sample_rate == 16000 and dcase.frames_for(clip_samples(dcase, 63)) == 63


def test_errors_name_the_fix(run_dir, tmp_path):
    root, ckpt_path = run_dir
    wav = root / "tone.wav"
    with pytest.raises(BenchmarkError, match="exactly one of --checkpoint"):
        explain_file(wav, detector="dense_ae", explainer="error_map", out=tmp_path)
    with pytest.raises(BenchmarkError, match="holds detector 'dense_ae', not 'ae'"):
        explain_file(wav, detector="ae", explainer="error_map", checkpoint=ckpt_path, out=tmp_path)
    with pytest.raises(BenchmarkError, match=r"no finished train cell of detector 'mae'.*there: dense_ae on toy"):
        explain_file(wav, detector="mae", explainer="error_map", suite_run=root, out=tmp_path)
    with pytest.raises(BenchmarkError, match="does not exist"):
        explain_file(root / "missing.wav", detector="dense_ae", explainer="error_map", suite_run=root, out=tmp_path)
    (tmp_path / "noise.wav").write_text("not audio")
    with pytest.raises(BenchmarkError, match="cannot read"):
        explain_file(tmp_path / "noise.wav", detector="dense_ae", explainer="error_map", suite_run=root,
                     out=tmp_path)


def test_api_explain_reports_score_verdict_fit_and_outlines_ground_truth_beside_the_clip(run_dir, tmp_path,
                                                                                          monkeypatch):
    import benchmark
    from benchmark import figures
    root, ckpt_path = run_dir
    # the `data synth` layout: <root>/dev_data/<machine>/test/<stem>.wav and <root>/ground_truth/dev/<machine>/
    clip_dir = tmp_path / "dev_data" / "fan" / "test"
    clip_dir.mkdir(parents=True)
    wav = clip_dir / "tone.wav"
    wav.write_bytes((root / "tone.wav").read_bytes())
    truth = tmp_path / "ground_truth" / "dev" / "fan"
    truth.mkdir(parents=True)
    mask = np.zeros((GRID[0], 50), dtype=bool)  # 50 frames: shorter than the grid, padded with False
    mask[10:20, 5:15] = True
    np.savez(truth / "tone.npz", tf_mask=mask, events=np.zeros((0, 4)), kinds=np.zeros(0, dtype=str))
    seen = {}
    original = figures.explanation_figure
    monkeypatch.setattr("benchmark.explain_one.explanation_figure",
                        lambda *a, **kw: seen.update(mask=kw.get("tf_mask")) or original(*a, **kw))
    res = benchmark.explain(wav, detector="dense_ae", explainer="error_map", checkpoint=ckpt_path,
                            out=tmp_path / "out")
    assert res.attribution.shape == GRID and np.isfinite(res.attribution).all()
    assert res.verdict == ("anomalous" if res.score >= res.threshold else "normal")
    assert 0.0 <= res.p_anomalous <= 1.0
    assert res.fitted == ("the clip is 1.50 s; zero-padded to 2.00 s, the length dense_ae was trained on "
                          f"({GRID[1]} frames)")
    assert res.ground_truth == (truth / "tone.npz").resolve()
    assert seen["mask"].shape == GRID and seen["mask"].sum() == 100 and not seen["mask"][:, 50:].any()
    assert [p.name for p in res.files] == ["tone-dense_ae-error_map.png"]
    assert "ground truth outlined" in res.summary() and f"vs threshold {res.threshold:.4g}" in res.summary()
    # without ground truth or `out`: nothing outlined, nothing written
    bare = benchmark.explain(root / "tone.wav", detector="dense_ae", explainer="error_map", checkpoint=ckpt_path)
    assert bare.ground_truth is None and bare.files == [] and bare.score == pytest.approx(res.score)
