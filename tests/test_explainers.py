"""The built-in explainers against planted truth, hand computations, Captum itself and sklearn.

Toy detectors live here (not registered): their scores are known functions of the input, so every
attribution can be checked against an exact expectation. Grids are tiny (32 x 40).
"""
from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients
from sklearn.linear_model import Ridge
from sklearn.metrics.pairwise import cosine_distances
from torch import nn
from torch.nn import functional as F

import benchmark
from adapters.explainers._captum import global_rng_from
from adapters.explainers.slime import kernel_weights, sample_segment_masks, segment_index, weighted_ridge
from benchmark.detector import Detector
from benchmark.errors import BenchmarkError
from benchmark.features import preset
from benchmark.needs import explainer_unmet
from benchmark.registry import registry
from benchmark.types import Batch

GRID = (32, 40)
BAND = slice(8, 12)  # mel bins 8..11 = band 2 of 8 on 32 bins
SPAN = slice(20, 24)  # frames 20..23 = segment 5 of 10 on 40 frames


def builtin_explainers() -> list:
    """The registered explainers this project ships (not the engine tests' `test-*` ones nor third-party ones)."""
    return [p for p in registry("explainer").plugins() if p.factory.__module__.startswith("adapters.")]


class BandSpanDetector(Detector):
    """score = gain · mean over one band × one time span of x²; the reference (normal) is zeros."""

    def __init__(self) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.ones(()))
        self.build(GRID, 1)
        self.tau, self.temperature, self.eer_threshold = torch.tensor(1.0), torch.tensor(0.5), torch.tensor(1.0)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        return self.gain * (x[:, 0, BAND, SPAN] ** 2).mean(dim=(1, 2))


class LinearDetector(Detector):
    """score = Σ a·x with a fixed weight map `a: [F, T]`; the reference of a clip is a per-clip shift of it."""

    def __init__(self, generator: torch.Generator) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.randn(*GRID, generator=generator))
        self.build(GRID, 1)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        return (x[:, 0] * self.a).sum(dim=(1, 2))

    def reference(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * x.roll(3, dims=-1) - 1.0


class TinyConvDetector(Detector):
    """conv 1->3, 2x2 average pool, conv 3->4 (the 'gradcam' layer), score = mean of tanh(features)²."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.conv1, self.conv2 = nn.Conv2d(1, 3, 3, padding=1), nn.Conv2d(3, 4, 3, padding=1)
        for p in self.parameters():
            p.data = torch.randn(p.shape, generator=g) * 0.5
        self.build(GRID, 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.avg_pool2d(torch.relu(self.conv1(x)), 2))

    def score(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.features(x)).pow(2).mean(dim=(1, 2, 3))

    def layers(self) -> dict[str, nn.Module]:
        return {"gradcam": self.conv2}


def planted_batch(n_clips: int = 3, seed: int = 0) -> Batch:
    """Noise around 0 with the detector's band × span raised: the anomaly the toy detector sees."""
    g = torch.Generator().manual_seed(seed)
    x = 0.3 * torch.randn(n_clips, 1, *GRID, generator=g)
    x[:, 0, BAND, SPAN] += 2.0
    return Batch(ids=[str(i) for i in range(n_clips)], x=x, labels=torch.ones(n_clips), meta=[{}] * n_clips)


def random_batch(n_clips: int, seed: int = 0) -> Batch:
    x = torch.randn(n_clips, 1, *GRID, generator=torch.Generator().manual_seed(seed))
    return Batch(ids=[str(i) for i in range(n_clips)], x=x, labels=torch.ones(n_clips), meta=[{}] * n_clips)


def explain(name: str, detector: Detector, batch: Batch, seed: int = 0, **params):
    explainer = benchmark.make("explainer", name, **params)
    explainer.bind(preset("dcase"), batch.x.device)
    return explainer.explain(detector, batch, generator=torch.Generator().manual_seed(seed))


def region_mask() -> torch.Tensor:
    m = torch.zeros(GRID, dtype=torch.bool)
    m[BAND, SPAN] = True
    return m


@pytest.mark.parametrize("name, params", [
    ("saliency", {}),
    ("integrated_gradients", {"n_steps": 8}),
    ("smoothgrad", {"nt_samples": 6}),
    ("gradient_shap", {"n_samples": 6}),
    ("occlusion", {"sliding_window_shapes": (4, 4), "baseline": "reference"}),
])
def test_planted_band_and_span_rank_first(name, params):
    attribution = explain(name, BandSpanDetector(), planted_batch(), **params).attribution
    n_top = int(region_mask().sum())
    top = attribution.flatten(1).topk(n_top, dim=1).indices
    inside = region_mask().flatten()[top]
    assert inside.all(), f"{name}: {(~inside).sum().item()} of the top {n_top} bins lie outside the planted region"


@pytest.mark.parametrize("segmentation, axis, planted", [("frequency", 2, 2), ("time", 1, 5)])
def test_slime_puts_the_planted_segment_first(segmentation, axis, planted):
    expl = explain("slime", BandSpanDetector(), planted_batch(), segmentation=segmentation, n_samples=200)
    a = expl.attribution
    # painted maps are constant along the other axis; one value per segment
    per_segment = a[:, :, ::4].mean(dim=1) if axis == 1 else a[:, ::4, :].mean(dim=2)
    assert torch.equal(per_segment.argmax(dim=1), torch.full((3,), planted))
    assert expl.forward_passes == 201.0


def test_slime_time_frequency_cell_and_decision_target():
    det = BandSpanDetector()
    for target in ("probability", "decision"):
        a = explain("slime", det, planted_batch(), n_samples=300, target=target).attribution
        # 6 x 4 cells on 40 x 32: frames 20..23 lie in cell 3 (20..26), bins 8..11 in band 1 (8..15)
        assert torch.equal(a.flatten(1).argmax(dim=1) // 40 // 8, torch.full((3,), 1)), target
        assert torch.equal(a.flatten(1).argmax(dim=1) % 40 * 6 // 40, torch.full((3,), 3)), target


def test_saliency_is_the_absolute_input_gradient():
    det, batch = TinyConvDetector(), random_batch(5)
    x = batch.x.clone().requires_grad_()
    (grad,) = torch.autograd.grad(det.score(x).sum(), x)
    torch.testing.assert_close(explain("saliency", det, batch, max_examples_per_forward=2).attribution,
                               grad[:, 0].abs())
    torch.testing.assert_close(explain("saliency", det, batch, abs=False).attribution, grad[:, 0])


def test_chunked_integrated_gradients_equal_one_captum_call():
    det, batch = TinyConvDetector(), random_batch(5)
    expected = IntegratedGradients(det.score).attribute(batch.x, baselines=torch.zeros_like(batch.x), n_steps=10)
    got = explain("integrated_gradients", det, batch, n_steps=10, max_examples_per_forward=3)
    torch.testing.assert_close(got.attribution, expected[:, 0], rtol=1e-5, atol=1e-6)
    assert (got.forward_passes, got.backward_passes) == (10.0, 10.0)


@pytest.mark.parametrize("name, params", [("integrated_gradients", {"n_steps": 5}),
                                          ("gradient_shap", {"n_samples": 7, "stdevs": 0.0})])
@pytest.mark.parametrize("baseline", ["zeros", "reference"])
def test_linear_detector_gets_input_minus_baseline_times_weight(name, params, baseline):
    """For score = Σ a·x, IG and noise-free GradientSHAP are exactly (x − baseline)·a, per clip."""
    det, batch = LinearDetector(torch.Generator().manual_seed(1)), random_batch(5)
    base = torch.zeros_like(batch.x) if baseline == "zeros" else det.reference(batch.x)
    expected = (batch.x - base)[:, 0] * det.a.detach()
    got = explain(name, det, batch, baseline=baseline, max_examples_per_forward=4, **params).attribution
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_gradient_shap_interpolates_at_random_points_per_sample():
    """score = ½Σx² has gradient x, so noise-free GradientSHAP from zeros is x² · mean(r) per clip,
    r ~ U(0, 1) the interpolation points; chunked samples must still average to one r̄ per clip."""
    class HalfSquare(LinearDetector):
        def score(self, x):
            return 0.5 * (x**2).sum(dim=(1, 2, 3))

    det, batch = HalfSquare(torch.Generator().manual_seed(0)), random_batch(4)
    a = explain("gradient_shap", det, batch, n_samples=200, stdevs=0.0, max_examples_per_forward=24).attribution
    r_mean = a / batch.x[:, 0] ** 2
    spread = r_mean.flatten(1).std(dim=1) / r_mean.flatten(1).mean(dim=1)
    assert (spread < 1e-4).all()
    assert ((r_mean.flatten(1)[:, 0] - 0.5).abs() < 0.06).all()


def test_smoothgrad_without_noise_is_saliency_and_noise_changes_it():
    det, batch = TinyConvDetector(), random_batch(4)
    sal = explain("saliency", det, batch).attribution
    torch.testing.assert_close(explain("smoothgrad", det, batch, nt_samples=5, stdevs=0.0,
                                       max_examples_per_forward=6).attribution, sal)
    noisy = explain("smoothgrad", det, batch, nt_samples=5, stdevs=0.5).attribution
    assert not torch.allclose(noisy, sal)


@pytest.mark.parametrize("name, params", [("smoothgrad", {"nt_samples": 5}), ("gradient_shap", {"n_samples": 5})])
def test_noise_explainers_draw_the_same_noise_at_any_forward_bound(name, params):
    """The forward bound splits the noisy copies into passes and must not choose their noise (Captum's
    NoiseTunnel drew it per pass, so a CPU run at 16 and a GPU run at 512 explained with other noise)."""
    det, batch = TinyConvDetector(), random_batch(3)
    maps = [explain(name, det, batch, stdevs=0.5, max_examples_per_forward=k, **params).attribution
            for k in (1, 4, 64)]
    for other in maps[1:]:
        torch.testing.assert_close(other, maps[0], rtol=1e-5, atol=1e-7)


def test_smoothgrad_and_gradient_shap_match_their_definitions_with_the_same_draws():
    """SmoothGrad: mean over copies of |d score / dx| at x + spread·ε; GradientSHAP from zeros: mean over copies of
    (d + ε) · d score / dd at r·(d + ε), d = x / spread. ε ~ N(0, stdevs²) and r ~ U(0, 1) replayed from the same
    seed in copy order (clip by clip), gradients by autograd."""
    det, batch = TinyConvDetector(), random_batch(3)
    n, stdevs = 4, 0.3
    spread = batch.x.flatten(1).std(dim=1).reshape(-1, 1, 1, 1)
    d = batch.x / spread

    def grad_at(point: torch.Tensor, i: int) -> torch.Tensor:
        point = point.clone().requires_grad_()
        (g,) = torch.autograd.grad(det.score(point * spread[i:i + 1]).sum(), point)
        return g

    g = torch.Generator().manual_seed(0)
    smooth = torch.stack([torch.stack([grad_at(d[i:i + 1] + stdevs * torch.randn(d.shape[1:], generator=g), i).abs()
                                       for _ in range(n)]).mean(dim=0)[0] for i in range(len(d))]) / spread
    torch.testing.assert_close(explain("smoothgrad", det, batch, nt_samples=n, stdevs=stdevs,
                                       max_examples_per_forward=3).attribution, smooth[:, 0], rtol=1e-5, atol=1e-6)
    g = torch.Generator().manual_seed(0)
    points = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,), generator=g)))
    shap = []
    for i in range(len(d)):
        copies = []
        for _ in range(n):
            noisy = d[i:i + 1] + stdevs * torch.randn(d.shape[1:], generator=g)
            copies.append(noisy * grad_at(torch.rand((), generator=points) * noisy, i))
        shap.append(torch.stack(copies).mean(dim=0)[0, 0])
    torch.testing.assert_close(explain("gradient_shap", det, batch, n_samples=n, stdevs=stdevs,
                                       max_examples_per_forward=5).attribution, torch.stack(shap),
                               rtol=1e-5, atol=1e-6)


def test_grad_cam_matches_a_hand_computation():
    det, batch = TinyConvDetector(), random_batch(3)
    x = batch.x.clone().requires_grad_()
    feats = det.features(x)
    (grad,) = torch.autograd.grad(torch.tanh(feats).pow(2).mean(dim=(1, 2, 3)).sum(), feats)
    cam = (grad.mean(dim=(2, 3), keepdim=True) * feats).sum(dim=1, keepdim=True).detach()
    expected = F.interpolate(cam, size=GRID, mode="bilinear", align_corners=False)[:, 0]
    got = explain("grad_cam", det, batch, max_examples_per_forward=2)
    torch.testing.assert_close(got.attribution, expected, rtol=1e-5, atol=1e-6)
    assert (got.attribution < 0).any(), "Grad-CAM is signed by default (no ReLU)"
    torch.testing.assert_close(explain("grad_cam", det, batch, relu_attributions=True).attribution,
                               F.interpolate(cam.clamp_min(0), size=GRID, mode="bilinear")[:, 0], rtol=1e-5, atol=1e-6)


def test_grad_cam_names_the_missing_layer():
    with pytest.raises(BenchmarkError, match=r"no 'gradcam' layer.*name its last encoder conv"):
        explain("grad_cam", BandSpanDetector(), planted_batch())


def test_occlusion_matches_a_patch_loop_with_the_reference():
    det, batch = TinyConvDetector(), random_batch(3)
    det.normal_mean = torch.full((1, 1, *GRID), -0.5)
    window, stride = (8, 16), (8, 10)
    x, ref = batch.x, det.reference(batch.x)
    total, count = torch.zeros(3, *GRID), torch.zeros(GRID)
    with torch.no_grad():
        s = det.score(x)
        for f0 in range(0, GRID[0] - window[0] + 1, stride[0]):
            for t0 in list(range(0, GRID[1] - window[1] + 1, stride[1])) + [30]:  # Captum's last shift overhangs
                patch = (slice(f0, f0 + window[0]), slice(t0, t0 + window[1]))
                occluded = x.clone()
                occluded[:, 0][(slice(None), *patch)] = ref[:, 0][(slice(None), *patch)]
                total[(slice(None), *patch)] += (s - det.score(occluded))[:, None, None]
                count[patch] += 1
    got = explain("occlusion", det, batch, sliding_window_shapes=window, strides=stride, max_examples_per_forward=5)
    torch.testing.assert_close(got.attribution, total / count, rtol=1e-5, atol=1e-6)
    assert got.forward_passes == 1 + 4 * 4 + 1


def test_error_map_is_the_squared_reconstruction_error_in_chunks():
    det = benchmark.make("detector", "dense_ae", hidden=16)
    det.build(GRID, 1)
    det.eval()
    batch = random_batch(5)
    with torch.no_grad():
        expected = ((det.reconstruct(batch.x) - batch.x) ** 2)[:, 0]
    got = explain("error_map", det, batch, max_examples_per_forward=2)
    torch.testing.assert_close(got.attribution, expected)
    assert got.forward_passes == 1.0


def test_energy_is_the_min_shifted_log_mel():
    batch = random_batch(3)
    a = explain("energy", BandSpanDetector(), batch).attribution
    torch.testing.assert_close(a, batch.x[:, 0] - batch.x[:, 0].amin(dim=(1, 2), keepdim=True))
    assert torch.equal(a.flatten(1).amin(dim=1), torch.zeros(3))


def test_weighted_ridge_equals_sklearn():
    g = torch.Generator().manual_seed(0)
    z = sample_segment_masks(3, 60, 7, bernoulli=False, generator=g).double()
    y, w = torch.rand(3, 60, generator=g, dtype=torch.float64), torch.rand(3, 60, generator=g, dtype=torch.float64)
    coef = weighted_ridge(z, y, w, alpha=1.0)
    for b in range(3):
        ref = Ridge(alpha=1.0).fit(z[b].numpy(), y[b].numpy(), sample_weight=w[b].numpy()).coef_
        np.testing.assert_allclose(coef[b].numpy(), ref, rtol=1e-9, atol=1e-12)


def test_kernel_weights_use_the_cosine_distance_to_all_on():
    keep = sample_segment_masks(2, 50, 8, bernoulli=True, generator=torch.Generator().manual_seed(1))
    keep[0, 5] = False  # all off: cosine distance 1 by sklearn's convention for zero vectors
    d = np.stack([cosine_distances(keep[b].double().numpy(), np.ones((1, 8)))[:, 0] for b in range(2)])
    expected = np.sqrt(np.exp(-(d**2) / 0.25**2))
    np.testing.assert_allclose(kernel_weights(keep, 0.25).numpy(), expected, rtol=1e-12)


def test_segment_masks_keep_row_zero_and_follow_the_draw():
    g = torch.Generator().manual_seed(2)
    counted = sample_segment_masks(4, 2000, 10, bernoulli=False, generator=g)
    assert counted[:, 0].all()
    n_off = (~counted[:, 1:]).sum(dim=-1)
    assert n_off.min() == 1 and n_off.max() == 10  # LIME: 1..K segments off, uniform
    assert abs(n_off.double().mean().item() - 5.5) < 0.1
    coin = sample_segment_masks(4, 2000, 24, bernoulli=True, generator=g)
    assert coin[:, 0].all() and abs(coin[:, 1:].double().mean().item() - 0.5) < 0.01


def test_segment_index_partitions_the_grid():
    time = segment_index((128, 313), "time", 10)
    assert torch.equal(time[0], time[77]) and sorted(time[0].bincount().tolist()) == [31] * 7 + [32] * 3
    freq = segment_index((128, 313), "frequency", 8)
    assert freq[:, 0].bincount().tolist() == [16] * 8 and torch.equal(freq[:, 0], freq[:, 200])
    cells = segment_index((128, 313), "time_frequency", (6, 4))
    assert cells.unique().tolist() == list(range(24)) and cells[127, 312] == 23 and cells[0, 312] == 5
    with pytest.raises(BenchmarkError, match="do not fit"):
        segment_index((8, 5), "time", 10)


def test_slime_paints_coefficients_and_is_batch_consistent():
    det = BandSpanDetector()
    a = explain("slime", det, planted_batch(), segmentation="time", n_samples=40, max_examples_per_forward=7)
    assert torch.equal(a.attribution, a.attribution[:, :1, :].expand_as(a.attribution))
    b = explain("slime", det, planted_batch(), segmentation="time", n_samples=40, max_examples_per_forward=64)
    torch.testing.assert_close(a.attribution, b.attribution)


def test_global_rng_is_seeded_from_the_generator_and_restored():
    torch.manual_seed(123)
    np.random.seed(7)
    expected_torch, expected_np = torch.rand(3), np.random.rand(3)
    torch.manual_seed(123)
    np.random.seed(7)
    with global_rng_from(torch.Generator().manual_seed(5), torch.device("cpu")):
        inside = torch.rand(3), np.random.rand(3)
    with global_rng_from(torch.Generator().manual_seed(5), torch.device("cpu")):
        again = torch.rand(3), np.random.rand(3)
    assert torch.equal(inside[0], again[0]) and np.array_equal(inside[1], again[1])
    assert torch.equal(torch.rand(3), expected_torch) and np.array_equal(np.random.rand(3), expected_np)


class ReconstructingConvDetector(TinyConvDetector):
    """TinyConvDetector that also reconstructs: with its 'gradcam' layer it offers what the explainers that do
    not train may need of a detector (x̂ = tanh(x), so the error map is not constant)."""

    capabilities = frozenset({"reconstructs", "layers"})

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x)


@pytest.mark.parametrize("name", [p.name for p in builtin_explainers() if not p.spec.trains])  # trained: own tests
def test_explainers_follow_the_generator_as_their_spec_says(name):
    """Same seed, same map; another seed: another map if and only if the spec declares the explainer stochastic."""
    plugin = registry("explainer").get(name)
    det, batch = ReconstructingConvDetector(), random_batch(2)
    why = explainer_unmet(name, plugin.needs, "the toy detector", det.capabilities, provides=())
    assert why is None, f"{why}: give this test's toy detector or batch what {name} needs"
    a, b = (explain(name, det, batch, seed=4, **plugin.spec.test_params) for _ in range(2))
    c = explain(name, det, batch, seed=5, **plugin.spec.test_params)
    assert torch.equal(a.attribution, b.attribution), f"{name}: the same generator seed gave another map"
    if plugin.spec.stochastic:
        assert not torch.equal(a.attribution, c.attribution), f"{name} is declared stochastic but ignores the seed"
    else:
        assert torch.equal(a.attribution, c.attribution), f"{name} is not declared stochastic but follows the seed"


def test_registry_metadata_states_needs_defaults_and_the_papers_values():
    reg = registry("explainer")
    for plugin in builtin_explainers():
        signature = inspect.signature(plugin.factory)
        for key, value in plugin.defaults.items():
            assert signature.parameters[key].default == value, (plugin.name, key)
    assert reg.get("grad_cam").needs == {"gradients", "layers"}
    assert reg.get("error_map").needs == {"reconstruction"}
    assert reg.get("smoothgrad").defaults == {"nt_samples": 25, "stdevs": 0.1, "abs": True, "noise": "relative",
                                              "max_examples_per_forward": None}
    assert reg.get("integrated_gradients").defaults["n_steps"] == 50
    assert reg.get("gradient_shap").defaults == {"n_samples": 25, "stdevs": 0.09, "baseline": "zeros",
                                                 "noise": "relative", "max_examples_per_forward": None}
    assert reg.get("slime").defaults["n_samples"] == 1000 and reg.get("slime").defaults["kernel_width"] == 0.25


@pytest.mark.parametrize("name, params, message", [
    ("integrated_gradients", {"baseline": "mean"}, "unknown baseline 'mean'; use one of zeros, reference"),
    ("occlusion", {"baseline": "noise"}, "unknown baseline"),
    ("slime", {"segmentation": "bands"}, "unknown segmentation 'bands'"),
    ("slime", {"target": "score"}, "unknown target 'score'"),
])
def test_bad_parameters_name_the_choices(name, params, message):
    with pytest.raises(BenchmarkError, match=message):
        benchmark.make("explainer", name, **params)


@pytest.mark.parametrize("name, params", [("smoothgrad", {"nt_samples": 8}), ("gradient_shap", {"n_samples": 8})])
def test_noise_is_relative_to_the_clips_spread(name, params):
    """score = ½Σx²: with noise relative to each clip's spread, a clip scaled by c gets the map scaled by c
    (SmoothGrad) or c² (GradientSHAP, x·grad) -- the same explanation on a dB grid and a log10 grid; with
    absolute noise of the same stdevs the scaled clip is smoothed far less."""
    class HalfSquare(LinearDetector):
        def score(self, x):
            return 0.5 * (x**2).sum(dim=(1, 2, 3))

    det, batch = HalfSquare(torch.Generator().manual_seed(0)), random_batch(3)
    c = 10.0
    power = 1 if name == "smoothgrad" else 2
    scaled = Batch(ids=batch.ids, x=batch.x * c, labels=batch.labels, meta=batch.meta)
    small = explain(name, det, batch, stdevs=0.5, **params).attribution
    big = explain(name, det, scaled, stdevs=0.5, **params).attribution
    torch.testing.assert_close(big, small * c**power, rtol=1e-4, atol=1e-4)
    absolute = explain(name, det, scaled, stdevs=0.5, noise="absolute", **params).attribution
    assert not torch.allclose(absolute, small * c**power, rtol=1e-2, atol=1e-2)
    with pytest.raises(BenchmarkError, match="unknown noise 'dB'"):
        explain(name, det, batch, noise="dB", **params)
