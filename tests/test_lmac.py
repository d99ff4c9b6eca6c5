"""The trained interpreters `lmac_td` and `lmac` on a tiny conv detector, on both preset grids.

The toy detector scores the energy of a 3x3 conv over the log-mel's deviation from the mean normal
log-mel, exposes that conv in `layers()`, and is calibrated like the engine does (tau, temperature
from normal scores; EER threshold from normals against clips with a 2.5 kHz tone burst).
"""
from __future__ import annotations

import math

import pytest
import torch

from adapters.explainers._interpreter import (
    LOG_MEL,
    as_feature_map,
    detector_forward,
    energy_ratio,
    hidden_layer_names,
    split_interpreter_clips,
    synthetic_anomalies,
)
from adapters.explainers.lmac import LMAC, mel_to_stft_bins
from adapters.explainers.lmac_td import LMACTD, reconstruction_filterbank
from benchmark.dataset import ClipTable
from benchmark.detector import Budget, Detector
from benchmark.errors import BenchmarkError
from benchmark.features import LogMel, preset
from benchmark.registry import explainers

CPU = torch.device("cpu")
SMALL_TD = dict(n_filters=32, chunk_size=50, d_ffn=32, n_heads=2, hidden_width=4)
PRESETS = {"dcase": preset("dcase").with_duration(1.0), "planer": preset("planer").with_duration(1.0),
           "short": preset("dcase").with_duration(0.5)}  # "short": for the tests that train longest
BUDGET = Budget(epochs=2, batch_size=4)


class ToyDetector(Detector):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, kernel_size=3, padding=1)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x - self.normal_mean).pow(2).mean(dim=(1, 2, 3))

    def layers(self) -> dict[str, torch.nn.Module]:
        return {"conv": self.conv, "gradcam": self.conv}


def machine_clips(spec, n: int, seed: int, tone: bool = False) -> torch.Tensor:
    """`[n, N]` harmonic hum at ~120 Hz over noise; with `tone`, a 2.5 kHz burst at 0.3-0.6 s."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(spec.n_samples) / spec.sample_rate
    f0 = 120.0 * (1 + 0.02 * torch.randn(n, 1, generator=g))
    phase = 2 * math.pi * torch.rand(n, 5, generator=g)
    w = sum(torch.sin(2 * math.pi * f0 * k * t + phase[:, k - 1:k]) / k for k in range(1, 6))
    w = 0.1 * w + 0.02 * torch.randn(n, len(t), generator=g)
    if tone:
        w = w + 0.1 * torch.sin(2 * math.pi * 2500.0 * t) * ((t >= 0.3) & (t < 0.6))
    return w.float()


def clip_table(spec, w: torch.Tensor, labels: list[int]) -> ClipTable:
    n = len(w)
    return ClipTable([f"c{i}" for i in range(n)], LogMel(spec)(w), torch.tensor(labels), [{}] * n, w,
                     None, None, None, torch.zeros(n, dtype=torch.bool))


def toy_detector(spec) -> Detector:
    torch.manual_seed(0)
    det = ToyDetector()
    logmel = LogMel(spec)
    normal, anomalous = logmel(machine_clips(spec, 12, 0)), logmel(machine_clips(spec, 6, 1, tone=True))
    det.build(tuple(normal.shape[-2:]), 1)
    det.remember_normals(normal)
    with torch.no_grad():
        det.calibrate(det.score(normal))
        scores = torch.cat([det.score(normal), det.score(anomalous)])
    det.set_eer_threshold(scores, torch.tensor([0] * 12 + [1] * 6))
    return det.eval().requires_grad_(False)


class Setting:
    """One preset: detector, normal training clips, a test batch of 2 normal + 2 anomalous clips."""

    def __init__(self, name: str) -> None:
        self.spec = PRESETS[name]
        self.detector = toy_detector(self.spec)
        self.train = clip_table(self.spec, machine_clips(self.spec, 8, 2), [0] * 8)
        w = torch.cat([machine_clips(self.spec, 2, 3), machine_clips(self.spec, 2, 4, tone=True)])
        self.test = clip_table(self.spec, w, [0, 0, 1, 1])
        self.batch = self.test.batch([0, 1, 2, 3])


@pytest.fixture(scope="module", params=["dcase", "planer"])
def setting(request) -> Setting:
    return Setting(request.param)


def make(cls, spec, **params):
    explainer = cls(**params)
    explainer.bind(spec, CPU)
    return explainer


PARAMS = {LMACTD: SMALL_TD, LMAC: dict(hidden_width=4)}
TRAINED: dict[tuple, tuple] = {}


def trained(cls, s: Setting):
    """One explainer per (class, preset) trained for one epoch (2 steps), shared by the tests; with its log."""
    key = (cls, s.spec.sample_rate)
    if key not in TRAINED:
        explainer = make(cls, s.spec, lr=3e-3, **PARAMS[cls])
        log = explainer.fit(s.detector, s.train, seed=1, budget=Budget(epochs=1, batch_size=4))
        TRAINED[key] = (explainer, log)
    return TRAINED[key]


def explain(explainer, s: Setting):
    return explainer.explain(s.detector, s.batch, generator=torch.Generator().manual_seed(0))


# --- registry and building blocks ------------------------------------------------------------

def test_registered_as_trained_waveform_explainers():
    for name in ("lmac_td", "lmac"):
        plugin = explainers.get(name)
        assert plugin.needs == {"waveform", "training"}
        assert plugin.factory.trains is True
    assert explainers.get("lmac_td").defaults["alpha"] == 0.75


def test_reconstruction_filterbank_is_a_parseval_pair():
    analysis, synthesis = reconstruction_filterbank(64)
    frame = analysis[0::2, 0].double()                                   # the '+' filters, [32, 16]
    window_sq = torch.sin(math.pi * torch.arange(16, dtype=torch.float64) / 16) ** 2
    assert torch.allclose(frame.T @ frame, torch.diag(window_sq), atol=1e-6)
    assert torch.equal(analysis[1::2], -analysis[0::2]) and torch.equal(analysis, synthesis)
    with pytest.raises(BenchmarkError, match="even"):
        reconstruction_filterbank(24)


def test_feature_map_reading_rules():
    assert as_feature_map(torch.zeros(2, 3, 5, 7), 2, "a").shape == (2, 3, 5, 7)
    assert as_feature_map(torch.zeros(2, 3, 7), 2, "a").shape == (2, 3, 1, 7)
    frames = torch.arange(2 * 4 * 3.0).reshape(8, 3)                     # [B*k, D], batch-major
    fm = as_feature_map(frames, 2, "a")
    assert fm.shape == (2, 3, 1, 4) and torch.equal(fm[1, :, 0, 2], frames[6])
    assert as_feature_map(torch.zeros(2, 9), 2, "a").shape == (2, 9, 1, 1)
    with pytest.raises(BenchmarkError, match="'odd'"):
        as_feature_map(torch.zeros(3, 2, 2, 2, 2), 3, "odd")


def test_default_layers_are_the_encoder_up_to_the_gradcam_alias(setting):
    assert hidden_layer_names(setting.detector, None) == ("conv",)
    assert hidden_layer_names(Detector(), None) == (LOG_MEL,)
    with pytest.raises(BenchmarkError, match="'nope'"):
        hidden_layer_names(setting.detector, ("nope",))


def test_synthetic_anomalies_add_a_burst_at_the_stated_level():
    spec = PRESETS["dcase"]
    w = machine_clips(spec, 16, 5)
    burst = synthetic_anomalies(w, spec.sample_rate, torch.Generator().manual_seed(0)) - w
    on = burst.abs() > 1e-6
    duration_s = on.sum(dim=1) / spec.sample_rate
    assert bool((duration_s > 0.15).all()) and bool((duration_s <= 1.0).all())
    level_db = 10 * torch.log10(burst.pow(2).sum(1) / on.sum(1) / w.pow(2).mean(1))
    assert bool((level_db > -16).all()) and bool((level_db < 6).all())


def test_mel_to_stft_spread_sums_to_one_per_bin():
    for spec in PRESETS.values():
        spread = mel_to_stft_bins(spec)
        assert spread.shape == (spec.n_fft // 2 + 1, spec.n_mels)
        assert torch.allclose(spread.sum(dim=1), torch.ones(len(spread)), atol=1e-5)


def test_energy_ratio_is_clipped_and_zero_where_the_input_is_empty():
    power = torch.tensor([[[4.0, 1.0, 0.0]]])
    assert torch.equal(energy_ratio(torch.tensor([[[1.0, 3.0, 2.0]]]), power), torch.tensor([[[0.25, 1.0, 0.0]]]))


# --- explanations ----------------------------------------------------------------------------

@pytest.mark.parametrize("cls", [LMACTD, LMAC], ids=["lmac_td", "lmac"])
def test_shapes_and_ranges_on_the_grid(setting, cls):
    explainer, log = trained(cls, setting)
    assert log["epochs"] == 1 and log["steps"] == 2 and log["hidden_layers"] == ["conv"]
    expl = explain(explainer, setting)
    b, n = setting.batch.waveform.shape
    grid = (b, *setting.spec.grid)
    assert expl.attribution.shape == grid and expl.mask.shape == grid
    assert expl.audio.shape == (b, n) and expl.extra["audio_masked_out"].shape == (b, n)
    for t in (expl.attribution, expl.mask):
        assert bool(((t >= 0) & (t <= 1)).all())
    assert torch.isfinite(expl.audio).all() and expl.forward_passes == 1.0
    # the map is the mel-power ratio of the returned explanation audio to the input
    logmel = LogMel(setting.spec)
    ratio = energy_ratio(logmel.mel(expl.audio), logmel.mel(setting.batch.waveform))
    assert torch.allclose(expl.attribution, ratio, atol=1e-5)


def test_lmac_td_parts_sum_to_the_input_at_init_and_to_dec_enc_always(setting):
    explainer = make(LMACTD, setting.spec, **SMALL_TD)
    explainer.fit(setting.detector, setting.train, seed=0, budget=Budget(epochs=0, batch_size=4))
    w = setting.batch.waveform
    expl = explain(explainer, setting)
    # perfect-reconstruction initialisation: w_in + w_out = Dec(enc(w)) = w up to float rounding
    assert (expl.audio + expl.extra["audio_masked_out"] - w).abs().max() < 1e-5 * w.abs().max()
    assert expl.audio.abs().max() > 0.1 * w.abs().max()  # the split is not trivial
    fitted, _ = trained(LMACTD, setting)
    expl = explain(fitted, setting)
    with torch.no_grad():
        dec_enc = fitted.network.decode(fitted.network.encode(w), w.shape[-1])
    # Dec is a bias-free transposed conv (linear), so the two parts always add up to Dec(enc(w))
    assert torch.allclose(expl.audio + expl.extra["audio_masked_out"], dec_enc, atol=1e-5)


def test_lmac_parts_sum_to_the_input(setting):
    expl = explain(trained(LMAC, setting)[0], setting)
    w = setting.batch.waveform
    assert (expl.audio + expl.extra["audio_masked_out"] - w).abs().max() < 1e-5 * w.abs().max()


def test_alpha_edge_cases():
    s = Setting("short")
    w = s.batch.waveform
    with torch.no_grad():
        x = LogMel(s.spec)(w)
        _, maps = detector_forward(s.detector, x, ("conv",))
    masks = {}
    for alpha in (0.0, 0.75, 1.0):
        net = make(LMACTD, s.spec, alpha=alpha, **SMALL_TD)
        net.fit(s.detector, s.train, seed=0, budget=Budget(epochs=0, batch_size=4))
        net = net.network
        with torch.no_grad():
            e = net.encode(w)
            first = net.masks(e, maps, s.spec.grid)
            rescaled = net.masks(3.0 * e, maps, s.spec.grid)
            for p in net.hidden.parameters():
                p.add_(0.5)
            moved = net.masks(e, maps, s.spec.grid)
        masks[alpha] = (first, rescaled, moved)
    # alpha = 0: the detector's features do not enter (moving the feature decoder changes nothing)
    assert torch.equal(masks[0.0][0], masks[0.0][2]) and not torch.equal(masks[0.0][0], masks[0.0][1])
    # alpha = 1: the waveform encoding does not enter the mask net (only what it masks)
    assert torch.equal(masks[1.0][0], masks[1.0][1]) and not torch.equal(masks[1.0][0], masks[1.0][2])
    # in between, both do
    assert not torch.equal(masks[0.75][0], masks[0.75][1]) and not torch.equal(masks[0.75][0], masks[0.75][2])


def test_alpha_outside_the_unit_interval_is_refused():
    with pytest.raises(BenchmarkError, match="alpha"):
        LMACTD(alpha=1.5)


@pytest.mark.parametrize("cls", [LMACTD, LMAC], ids=["lmac_td", "lmac"])
def test_training_lowers_the_loss_and_leaves_the_detector_alone(cls):
    s = Setting("short")
    table = s.test                      # 2 normal + 2 anomalous clips: both decisions occur
    w = table.waveform
    det_state = {k: v.clone() for k, v in s.detector.state_dict().items()}
    losses = []
    for epochs in (0, 3):
        explainer = make(cls, s.spec, lr={LMACTD: 3e-3, LMAC: 1e-2}[cls], augment=0.0, **PARAMS[cls])
        log = explainer.fit(s.detector, table, seed=0, budget=Budget(epochs=epochs, batch_size=4))
        explainer.network.eval()
        with torch.no_grad():
            total, terms = explainer.training_loss(s.detector, w)
        losses.append(float(total))
    assert float(terms["anomalous"]) == 0.5
    assert losses[1] < 0.8 * losses[0], losses
    assert [h["loss"] for h in log["history"]][-1] < log["history"][0]["loss"]
    assert all(torch.equal(v, s.detector.state_dict()[k]) for k, v in det_state.items())
    assert all(p.grad is None for p in s.detector.parameters())


@pytest.mark.parametrize("cls", [LMACTD, LMAC], ids=["lmac_td", "lmac"])
def test_state_dict_round_trip_gives_identical_explanations(setting, cls):
    fitted, _ = trained(cls, setting)
    loaded = make(cls, setting.spec, **PARAMS[cls])
    loaded.load_state_dict(fitted.state_dict())
    a, b = explain(fitted, setting), explain(loaded, setting)
    for u, v in ((a.attribution, b.attribution), (a.audio, b.audio), (a.mask, b.mask),
                 (a.extra["audio_masked_out"], b.extra["audio_masked_out"])):
        assert torch.equal(u, v)


@pytest.mark.parametrize("cls", [LMACTD, LMAC], ids=["lmac_td", "lmac"])
def test_training_is_deterministic_for_a_seed(cls):
    s = Setting("short")
    maps = []
    for seed in (0, 0, 1):
        explainer = make(cls, s.spec, lr=3e-3, **PARAMS[cls])
        explainer.fit(s.detector, s.train, seed=seed, budget=Budget(epochs=1, batch_size=8))
        maps.append(explain(explainer, s).attribution)
    assert torch.equal(maps[0], maps[1]) and not torch.equal(maps[0], maps[2])


def test_loss_terms_follow_the_reference_formula_with_a_capped_masked_out_term():
    s = Setting("short")
    explainer = make(LMAC, s.spec, hidden_width=4)
    w = s.test.waveform
    g = torch.Generator().manual_seed(0)
    # the first two masked-out clips are far off (logits ~640): the first one hits the cap
    w_in, w_out = 0.5 * w, torch.cat([0.01 * w[:2], w[2:] + 0.05 * torch.randn(w[2:].shape, generator=g)])
    decision = torch.tensor([0.0, 1.0, 0.0, 1.0])
    with torch.no_grad():
        terms = explainer.loss_terms(s.detector, w, w_in, w_out, decision)
        # p in float64 from the float32 scores: a float32 sigmoid near 1 would lose 1 - p
        p_in, p_out = (torch.sigmoid((s.detector.score(LogMel(s.spec)(v)).double() - float(s.detector.tau))
                                     / float(s.detector.temperature)) for v in (w_in, w_out))
    bce = lambda p, y: torch.where(y == 1, -p.log(), -(1 - p).log())  # noqa: E731
    y = decision.double()
    assert float(terms["in"]) == pytest.approx(5.0 * float(bce(p_in, y).mean()), rel=1e-4)
    assert float(terms["out"]) == pytest.approx(-0.2 * float(bce(p_out, y).clamp(max=100.0).mean()), rel=1e-4)
    assert float(bce(p_out, y)[0]) > 100.0
    stft = torch.stft(w_in, s.spec.n_fft, s.spec.hop_length, s.spec.win_length,
                      window=torch.hann_window(s.spec.win_length), return_complex=True)
    assert float(terms["reg"]) == pytest.approx(6.0 * float(torch.log1p(stft.abs()).mean()), rel=1e-5)
    # far above tau p rounds to 1 in float32, yet the masked-in term keeps a gradient towards "normal"
    loud = (30.0 * w_in).requires_grad_()
    with torch.enable_grad():
        t = explainer.loss_terms(s.detector, w, loud, w_out, torch.zeros(4))
        (grad,) = torch.autograd.grad(t["in"], loud)
    assert bool((s.detector.p_anom(LogMel(s.spec)(loud.detach())) == 1.0).all()) and float(grad.abs().sum()) > 0


def test_gradients_accumulated_over_small_forwards_equal_the_whole_batch():
    s = Setting("short")
    explainer = make(LMACTD, s.spec, augment=0.0, **PARAMS[LMACTD])
    explainer.fit(s.detector, s.test, seed=0, budget=Budget(epochs=0, batch_size=4))
    params = list(explainer.network.parameters())
    explainer.network.train()
    grads, logs = [], []
    for per_forward in (4, 1):
        logs.append({k: float(v) for k, v in
                     explainer.accumulate_gradients(s.detector, s.test.waveform, params, per_forward).items()})
        grads.append(torch.cat([p.grad.flatten() for p in params if p.grad is not None]))
    assert logs[0] == pytest.approx(logs[1], rel=1e-5, abs=1e-6)
    # float32 sums in another order: the largest gap, 1.8e-5 of the largest gradient, is on the bias of the
    # frame projection (a sum over every frame of every clip); a wrong share would be off by a whole part
    assert torch.allclose(grads[0], grads[1], rtol=1e-4, atol=5e-5 * float(grads[0].abs().max()))
    assert float(grads[0].abs().max()) > 0


def test_feature_only_data_and_bad_parameters_are_refused(setting):
    explainer = make(LMAC, setting.spec, hidden_width=4)
    features_only = clip_table(setting.spec, setting.train.waveform, [0] * len(setting.train))
    features_only.waveform = None
    with pytest.raises(BenchmarkError, match="waveforms"):
        explainer.fit(setting.detector, features_only, seed=0, budget=BUDGET)
    with pytest.raises(BenchmarkError, match="not trained"):
        explain(explainer, setting)
    with pytest.raises(BenchmarkError, match="n_heads"):
        LMACTD(n_filters=64, n_heads=3)
    with pytest.raises(BenchmarkError, match="augment"):
        LMAC(augment=2.0)


@pytest.mark.parametrize("cls", [LMACTD, LMAC])
def test_the_hidden_statistics_and_the_trained_network_do_not_depend_on_the_forward_bound(cls):
    """The forward bound only splits passes (CPU and GPU defaults differ): the hidden layers' normalisation is
    measured on the same clips at any bound, and equals torch's mean and std of all their maps at once."""
    s = Setting("short")
    nets = {}
    for bound in (16, 512):  # a sixteenth each for L-MAC-TD: one clip per forward against all of them
        explainer = make(cls, s.spec, **PARAMS[cls])
        explainer.forward_bound = bound
        explainer.fit(s.detector, s.train, seed=0, budget=Budget(epochs=1, batch_size=4))
        nets[bound] = explainer
    one, whole = nets[16].network.hidden, nets[512].network.hidden
    assert torch.allclose(one.layer_mean, whole.layer_mean, rtol=1e-6, atol=0)
    assert torch.allclose(one.layer_std, whole.layer_std, rtol=1e-6, atol=0)
    # the reference: torch's statistics over the clips' maps in one pass, the clips fit() measured on
    g = torch.Generator().manual_seed(0)
    waves = s.train.waveform[torch.randperm(len(s.train), generator=g)[: nets[16].train_clips]]
    fit_waves, _ = split_interpreter_clips(waves, g)
    with torch.no_grad():
        _, maps = detector_forward(s.detector, LogMel(s.spec)(fit_waves[:16]), nets[16].hidden_names)
    assert torch.allclose(one.layer_mean, torch.stack([m.mean() for m in maps]), rtol=1e-5)
    assert torch.allclose(one.layer_std, torch.stack([m.std() for m in maps]), rtol=1e-5)
    # the two trainings then differ by float32 rounding only: Adam divides each gradient by its own scale, so
    # on a near-zero gradient the rounding of another split can move a step by a fraction of lr (L-MAC-TD: 59
    # of 36k parameters by up to 6.5e-5 at lr 2e-4), never by a whole step, and the rest not at all
    a, b = (torch.cat([p.detach().flatten() for p in nets[k].network.parameters()]) for k in (16, 512))
    off = (a - b).abs()
    assert float(off.max()) < nets[16].lr and int((off > 1e-6).sum()) <= 0.005 * len(off)
