"""encodec_latent: offline checkpoint loading, the 128 x 75 Hz latent, codec training, the reconstruction floor
against the input-blind level, the codec-domain threshold (the detector's quantile rule on decoded held-out
normals, the clips the train cell holds out), the descending keep selection inside `explain`, keep 100 % = the
codec reconstruction, and the state-dict round trip. Short clips (0.5 s) and a 2-filter codec keep it fast."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from encodec.model import EncodecModel

import tests.engine_plugins as engine_plugins
from adapters.explainers._codec import (
    CODEC_RATE,
    INPUT_RMS,
    OFFICIAL_CHECKPOINT,
    LatentSynthesis,
    codec_quality,
    pretrained_codec,
    rms,
    small_codec,
)
from adapters.explainers.encodec_latent import FLOOR_RATIO, EncodecLatent, retained_energy
from benchmark.cells import TrainCell
from benchmark.dataset import ClipTable
from benchmark.detector import Budget, Detector
from benchmark.errors import BenchmarkError
from benchmark.features import LogMel, preset
from benchmark.holdout import held_out_split
from benchmark.metrics.synthesis import normal_share
from benchmark.store import Store
from benchmark.suites import PluginConfig
from benchmark.training import run_train_cell
from benchmark.types import Batch
from benchmark.workspace import Workspace

SPEC = preset("dcase").with_duration(0.5)  # 8000 samples at 16 kHz -> 128 x 16
N = SPEC.n_samples
DEVICE = torch.device("cpu")


def machine_clips(n: int, seed: int, anomalous: bool = False) -> torch.Tensor:
    """Harmonic hum over noise, `[n, N]`; anomalous clips add a 2.5 kHz burst in the second half."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(N) / SPEC.sample_rate
    f0 = 120.0 * (1 + 0.02 * torch.randn(n, 1, generator=g))
    hum = sum(torch.sin(2 * math.pi * f0 * k * t) / k for k in range(1, 6))
    w = 0.1 * hum + 0.02 * torch.randn(n, N, generator=g)
    if anomalous:
        w = w + 0.1 * torch.sin(2 * math.pi * 2500.0 * t) * (t > 0.25)
    return w.float()


class MeanDeviation(Detector):
    """Squared log-mel deviation from the mean normal clip."""

    def score(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self.normal_mean) ** 2).mean(dim=(1, 2, 3))


def table_of(w: torch.Tensor) -> ClipTable:
    with torch.no_grad():
        x = LogMel(SPEC)(w)
    n = len(w)
    return ClipTable([f"c{i}" for i in range(n)], x, torch.zeros(n, dtype=torch.long), [{}] * n, w, None, None, None,
                     torch.zeros(n, dtype=torch.bool))


@pytest.fixture(scope="module")
def setting():
    torch.manual_seed(0)
    train = table_of(machine_clips(20, seed=0))  # 2 held out: the calibration clips
    test_w = torch.cat([machine_clips(2, seed=1), machine_clips(1, seed=2, anomalous=True)])
    with torch.no_grad():
        x = LogMel(SPEC)(test_w)
    det = MeanDeviation()
    det.remember_normals(train.x)
    labels = torch.tensor([0, 0, 1])
    with torch.no_grad():
        det.set_eer_threshold(det.score(x), labels)
    batch = Batch(ids=["a", "b", "c"], x=x, labels=labels, meta=[{}] * 3, waveform=test_w)
    explainer = make_explainer()
    log = explainer.fit(det, train, seed=0, budget=Budget(epochs=2, patience=5, batch_size=8))
    return explainer, log, det, batch


def make_explainer(**params) -> EncodecLatent:
    explainer = EncodecLatent(**{"n_steps": 4, "n_filters": 2, **params})
    explainer.bind(SPEC, DEVICE)
    return explainer


def explain(explainer: EncodecLatent, det: Detector, batch: Batch):
    return explainer.explain(det, batch, generator=torch.Generator().manual_seed(0))


@pytest.mark.filterwarnings("ignore::FutureWarning")  # encodec 0.1.1 builds with the deprecated weight_norm
def test_offline_checkpoint_file_gives_the_models_own_outputs(tmp_path) -> None:
    torch.manual_seed(0)
    model = EncodecModel.encodec_model_24khz(pretrained=False)
    path = tmp_path / "random_24khz.th"
    torch.save(model.state_dict(), path)
    codec = pretrained_codec(str(path))
    w = 0.1 * torch.randn(2, CODEC_RATE // 5, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        z = codec.encode(w)
        assert torch.equal(z, model.encoder(w[:, None]))
        assert torch.equal(codec.decode(z), model.decoder(z)[:, 0])
    assert z.shape == (2, 128, 15)  # 0.2 s at 75 frames/s


def test_checkpoint_folder_without_the_official_file_or_with_a_bad_one_is_refused(tmp_path) -> None:
    with pytest.raises(BenchmarkError, match=OFFICIAL_CHECKPOINT):
        pretrained_codec(str(tmp_path))
    (tmp_path / OFFICIAL_CHECKPOINT).write_bytes(b"not a checkpoint")
    with pytest.raises(BenchmarkError, match="checksum"):
        EncodecLatent(pretrained=str(tmp_path))


def test_latent_is_128_dimensional_at_75_frames_per_second() -> None:
    codec = small_codec(n_filters=2, lstm=1)
    with torch.no_grad():
        assert codec.encode(torch.zeros(2, CODEC_RATE)).shape == (2, 128, 75)
        assert codec.encode(torch.zeros(1, 2 * CODEC_RATE)).shape == (1, 128, 150)
        synthesis = LatentSynthesis(codec, SPEC.sample_rate, N, examples_per_forward=4)
        z = synthesis.encode(torch.zeros(3, N))
        assert z.shape == (3, 128, 38)  # 0.5 s = 12000 samples at 24 kHz, 37.5 frames rounded up
        assert synthesis.decode(z).shape == (3, N)


def test_fit_trains_the_small_codec_and_reports_its_quality(setting) -> None:
    explainer, log, _, _ = setting
    assert log["codec"] == "trained" and log["epochs"] == 2
    assert log["val_loss_best"] < log["val_loss_initial"]
    assert math.isfinite(log["val_si_sdr_db"]) and log["val_logmel_l1"] > 0
    assert log["codec_params"] == sum(p.numel() for p in small_codec(2, 1).parameters())
    assert len(log["crop_logmel_l1_curve"]) == 2 and log["val_clips"] == 2
    assert log["val_floor_logmel_l1"] == pytest.approx(FLOOR_RATIO * log["val_blind_logmel_l1"])
    assert log["val_floor_met"] == (log["val_logmel_l1"] <= log["val_floor_logmel_l1"])
    fit_rows, _ = held_out_split(20, 0)
    fit_rms = float(rms(machine_clips(20, seed=0)[fit_rows]).median())
    assert float(explainer.codec.input_gain) == pytest.approx(INPUT_RMS / fit_rms, rel=1e-5)


def test_the_floor_fails_a_codec_that_ignores_its_input() -> None:
    """A collapsed codec gives every clip the same output (here: the first clip); its log-mel L1 is no better
    than the mean normal log-mel's, so it misses the floor, while a faithful one meets it."""
    logmel = LogMel(SPEC)
    clips = torch.cat([machine_clips(3, seed=5), 3 * machine_clips(3, seed=6)])  # two levels: blind output misses
    with torch.no_grad():
        band_mean = logmel(clips).mean(dim=(0, 3), keepdim=True)
    collapsed = codec_quality(clips[:1].expand_as(clips), clips, logmel, band_mean, FLOOR_RATIO)
    faithful = codec_quality(clips + 1e-3 * torch.randn(clips.shape, generator=torch.Generator().manual_seed(0)),
                             clips, logmel, band_mean, FLOOR_RATIO)
    assert collapsed["logmel_l1"] > FLOOR_RATIO * collapsed["blind_logmel_l1"] and not collapsed["floor_met"]
    assert faithful["floor_met"] and faithful["blind_logmel_l1"] == collapsed["blind_logmel_l1"]


def test_held_out_clips_are_the_ones_the_train_cell_holds_out_from_the_detector(tmp_path, monkeypatch) -> None:
    seen = {}

    def recording_fit(self, train, val, **kwargs):
        seen["val"] = val
        return {"epochs": 0}

    monkeypatch.setattr(engine_plugins.Template, "fit", recording_fit)
    ws = Workspace(Store(tmp_path / "runs"), DEVICE)
    cell = TrainCell(PluginConfig("dataset", "test-blobs", {"n_train": 23}), PluginConfig("detector", "test-template"),
                     seed=3)
    run_train_cell(cell, ws)
    normal = ws.table(cell.dataset, "train")
    fit_rows, held_rows = held_out_split(len(normal), 3)
    assert len(held_rows) == 2 and torch.equal(seen["val"], normal.x[held_rows])
    assert sorted(fit_rows.tolist() + held_rows.tolist()) == list(range(23))


def test_codec_threshold_is_the_quantile_rule_on_decoded_held_out_normals(setting) -> None:
    """Slow reference: decode the held-out normal clips, score them with the detector, take the quantile the
    detector's own calibration takes. Every clip of the batch carries it, and its passes are charged."""
    explainer, _, det, batch = setting
    _, held_rows = held_out_split(20, 0)
    held = machine_clips(20, seed=0)[held_rows]
    with torch.no_grad():
        scores = det.score(LogMel(SPEC)(explainer._synthesis(N).reconstruct(held)))
        own = det.score(LogMel(SPEC)(held))
    share = normal_share(own, det.eer_threshold)  # the EER decision's share of normals called normal
    want = float(np.quantile(scores.double().numpy(), share))
    expl = explain(explainer, det, batch)
    assert expl.extra["codec_threshold"].shape == (3,)
    assert torch.allclose(expl.extra["codec_threshold"], torch.full((3,), want), rtol=1e-5)
    # IG steps + the 2 calibration clips, decoded and as they are, over 3 clips
    assert expl.forward_passes == pytest.approx(4 + 2 * 2 / 3)
    assert expl.extra["codec_floor_met"].tolist() == [float(explainer.quality["floor_met"])] * 3
    # what it corrects: at the detector's own threshold these decoded normals read anomalous
    assert (det.decision(scores) == 1).all()


def test_explanation_keeps_the_elements_with_the_largest_attribution(setting, monkeypatch) -> None:
    """Plant an attribution that is large on known elements: exactly those come from z in the decoded
    explanation's latent, and exactly those come from the fill in the masked-out companion's."""
    explainer, _, det, batch = setting
    with torch.no_grad():
        z_shape = explainer._synthesis(N).encode(batch.waveform).shape
    planted = -torch.rand(z_shape, generator=torch.Generator().manual_seed(2))  # all below the planted ones
    n_keep = int(round(0.21 * planted[0].numel()))
    chosen = torch.randperm(planted[0].numel(), generator=torch.Generator().manual_seed(3))[:n_keep]
    planted.view(len(planted), -1)[:, chosen] = 1.0 + torch.rand(n_keep)
    decoded = []

    def recording_decode(synthesis, latents):
        decoded.append(latents)
        return EncodecLatent._decode(synthesis, latents)

    monkeypatch.setattr(explainer, "_latent_attribution", lambda *args: planted)
    monkeypatch.setattr(explainer, "_decode", recording_decode)
    expl = explain(explainer, det, batch)
    z, fill = expl.extra["latent"], expl.extra["latent_fill"]
    kept = torch.zeros_like(planted, dtype=torch.bool)
    kept.view(len(planted), -1)[:, chosen] = True
    (latents,) = decoded  # [reconstruction, explanation, masked out, kept part for the map]
    assert torch.equal(latents[0], z)
    assert torch.equal(latents[1], torch.where(kept, z, fill))
    assert torch.equal(latents[2], torch.where(kept, fill, z))
    assert torch.equal(latents[3], torch.where(kept, z, torch.zeros_like(z)))
    assert not torch.equal(latents[1], torch.where(~kept, z, fill))
    with torch.no_grad():
        want = expl.extra["synthesis"].decode(torch.where(kept, z, fill))
    assert torch.allclose(expl.audio, want, atol=1e-6)


def test_explanation_shapes_map_and_fixed_fill(setting) -> None:
    explainer, _, det, batch = setting
    expl = explain(explainer, det, batch)
    assert expl.attribution.shape == (3, *SPEC.grid)
    assert expl.audio.shape == (3, N) and expl.extra["codec_reconstruction"].shape == (3, N)
    assert expl.extra["latent"].shape == expl.extra["latent_attribution"].shape == (3, 128, 38)
    assert ((expl.attribution >= 0) & (expl.attribution <= 1)).all()
    fill = expl.extra["latent_fill"]
    assert torch.equal(fill[0], fill[2])  # one fixed noise clip for every clip
    with torch.no_grad():
        assert torch.equal(fill[:1], expl.extra["synthesis"].noise_latent(explainer.noise_rms, DEVICE))
    assert expl.backward_passes == 4
    again = explain(explainer, det, batch)
    assert torch.equal(again.attribution, expl.attribution) and torch.equal(again.audio, expl.audio)


def test_keeping_everything_reproduces_the_codec_reconstruction(setting) -> None:
    explainer, _, det, batch = setting
    whole = make_explainer(keep=1.0)
    whole.load_state_dict(explainer.state_dict())
    expl = explain(whole, det, batch)
    recon = expl.extra["codec_reconstruction"]
    assert torch.allclose(expl.audio, recon, atol=1e-6)
    with torch.no_grad():
        assert torch.allclose(recon, expl.extra["synthesis"].decode(expl.extra["latent"]), atol=1e-6)
    assert (expl.attribution > 0.999).float().mean() > 0.99  # all of the reconstruction's energy is kept


def test_noise_baseline_maps_the_energy_the_listenable_explanation_keeps(setting) -> None:
    explainer, _, det, batch = setting
    noisy = make_explainer(baseline="noise")
    noisy.load_state_dict(explainer.state_dict())
    expl = explain(noisy, det, batch)
    logmel = LogMel(SPEC)
    assert torch.allclose(expl.attribution, retained_energy(logmel, expl.audio, expl.extra["codec_reconstruction"]))
    zeros = explain(explainer, det, batch)
    assert not torch.allclose(expl.extra["latent_attribution"], zeros.extra["latent_attribution"])


def test_state_dict_round_trip_gives_the_same_explanation(setting) -> None:
    explainer, _, det, batch = setting
    twin = make_explainer()
    twin.load_state_dict(explainer.state_dict())
    a, b = explain(explainer, det, batch), explain(twin, det, batch)
    assert torch.equal(a.audio, b.audio) and torch.equal(a.attribution, b.attribution)
    assert torch.equal(a.extra["codec_threshold"], b.extra["codec_threshold"])
    assert float(twin.codec.input_gain) == float(explainer.codec.input_gain) != 1.0


def test_features_only_data_is_refused_with_the_reason(setting) -> None:
    _, _, det, _ = setting
    table = table_of(machine_clips(2, seed=4))
    table.waveform = None
    with pytest.raises(BenchmarkError, match="waveforms"):
        make_explainer().fit(det, table, seed=0, budget=Budget(epochs=1))


def test_the_codec_and_its_threshold_do_not_follow_the_runs_precision(setting) -> None:
    """The codec is shared by every detector and run, so a bf16 run trains and calibrates it in float32 (its key
    does not hold the precision); only the IG passes of `explain` follow the precision, and the threshold, the
    latent and the reconstruction the metrics compare against stay float32."""
    explainer, _, det, batch = setting
    train = table_of(machine_clips(20, seed=0))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        torch.manual_seed(0)
        bf16 = make_explainer()
        bf16.fit(det, train, seed=0, budget=Budget(epochs=2, patience=5, batch_size=8))
        expl = explain(bf16, det, batch)
    state, reference = bf16.state_dict(), explainer.state_dict()
    assert all(torch.equal(state["codec"][k], reference["codec"][k]) for k in reference["codec"])
    assert torch.equal(state["calibration_x"], reference["calibration_x"])
    assert state["calibration_x"].dtype == torch.float32
    plain = explain(explainer, det, batch)
    assert torch.equal(expl.extra["codec_threshold"], plain.extra["codec_threshold"])
    assert torch.equal(expl.extra["latent"], plain.extra["latent"])
    assert expl.extra["codec_reconstruction"].dtype == torch.float32
    assert torch.equal(expl.extra["codec_reconstruction"], plain.extra["codec_reconstruction"])
