"""Every registered metric on a toy detector with hand-checkable scores; pass accounting; the
randomisation sanity check and the Captum robustness metrics against independent references."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import scipy.ndimage
import scipy.stats
import torch

from benchmark.detector import Detector
from benchmark.features import FeatureSpec, LogMel
from benchmark.metrics import (
    ff,
    ff_norm,
    infidelity,
    masked_in_out,
    randomisation_spearman,
    randomisation_ssim,
    sensitivity_max,
    ssim,
)
from benchmark.metrics.context import MetricContext
from benchmark.metrics.temporal import peak_frames
from benchmark.needs import Need, metric_unmet
from benchmark.registry import metrics
from benchmark.specs import FAMILIES
from benchmark.types import Batch, Explanation

SPEC = FeatureSpec(sample_rate=800, n_fft=64, win_length=64, hop_length=20, n_mels=8, duration_s=1.0)  # 8 x 41
TOY_PROVIDES = frozenset({Need.TF_MASK, Need.INTERVALS})  # make_context's clips (a waveform only when asked)
TOY_CAPABILITIES = frozenset({"reconstructs", "layers"})  # TemplateDetector
EXPLANATION_OUTPUTS = frozenset({Need.EXPLANATION_AUDIO, Need.EXPLANATION_LATENT, Need.EXPLANATION_SYNTHESIS})


class BandWeights(torch.nn.Module):
    """Per-band weights with their own initialiser (re-initialised by `reset_parameters`)."""

    def __init__(self, n_mels: int):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.linspace(0.5, 1.5, n_mels))

    def reset_parameters(self) -> None:
        torch.nn.init.uniform_(self.weight, 0.0, 3.0)


class Offset(torch.nn.Module):
    """A learned offset with no initialiser of its own (re-drawn from a normal distribution)."""

    def __init__(self, grid: tuple[int, int]):
        super().__init__()
        self.bias = torch.nn.Parameter(torch.zeros(*grid))


class TemplateDetector(Detector):
    """score(x) = mean over bins of w_f (x - template - offset)^2; reference = template."""

    def __init__(self, template: torch.Tensor):
        super().__init__()
        self.register_buffer("template", template)
        self.offset = Offset(tuple(template.shape[-2:]))
        self.band = BandWeights(template.shape[-2])

    def score(self, x: torch.Tensor) -> torch.Tensor:
        w = self.band.weight[:, None]
        return (w * (x - self.template - self.offset.bias) ** 2).mean(dim=(1, 2, 3))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return (self.template + self.offset.bias).expand_as(x)

    def reference(self, x: torch.Tensor) -> torch.Tensor:
        return self.template.expand_as(x)

    def layers(self) -> dict[str, torch.nn.Module]:
        return {"offset": self.offset, "band": self.band}


def saliency(detector: Detector, batch: Batch) -> Explanation:
    """|d score / d x|, a map that depends on every parameter of the toy detector."""
    x = batch.x.detach().requires_grad_(True)
    with torch.enable_grad():
        grad, = torch.autograd.grad(detector.score(x).sum(), x)
    return Explanation(attribution=grad.abs()[:, 0], forward_passes=1.0, backward_passes=1.0)


def energy(detector: Detector, batch: Batch) -> Explanation:
    """The input itself: independent of the detector, so it must fail the randomisation check."""
    return Explanation(attribution=batch.x[:, 0].clone())


def make_context(explain=saliency, *, b: int = 4, with_waveform: bool = False, seed: int = 0) -> MetricContext:
    g = torch.Generator().manual_seed(seed)
    n_mels, n_frames = SPEC.grid
    waveform = None
    if with_waveform:
        waveform = torch.randn(b, SPEC.n_samples, generator=g) * 0.1
        x = LogMel(SPEC)(waveform)
        template = x.mean(0, keepdim=True)
    else:
        template = torch.randn(1, 1, n_mels, n_frames, generator=g)
        x = template + 0.2 * torch.randn(b, 1, n_mels, n_frames, generator=g)
    frame_labels = torch.zeros(b, n_frames, dtype=torch.bool)
    tf_mask = torch.zeros(b, n_mels, n_frames, dtype=torch.bool)
    for i in range(b):
        on = 4 + 7 * i
        x[i, :, 2:5, on:on + 10] += 1.5 + 0.3 * i  # the anomaly: bands 2-4, ten frames
        frame_labels[i, on:on + 10] = True
        tf_mask[i, 2:5, on:on + 10] = True
    detector = TemplateDetector(template)
    with torch.no_grad():
        normals = template + 0.2 * torch.randn(32, 1, n_mels, n_frames, generator=g)
        detector.remember_normals(normals)  # as the train cell does: the L-MAC fill reads the normal mean
        detector.calibrate(detector.score(normals))
        scores = detector.score(x)
    batch = Batch(ids=[f"clip{i}" for i in range(b)], x=x, labels=torch.ones(b, dtype=torch.long),
                  meta=[{} for _ in range(b)], waveform=waveform, tf_mask=tf_mask, frame_labels=frame_labels,
                  has_truth=torch.ones(b, dtype=torch.bool))
    return MetricContext(batch=batch, explanation=explain(detector, batch), detector=detector, spec=SPEC,
                         scores=scores, explain=explain, generator=torch.Generator().manual_seed(seed + 1))


def builtin_metrics() -> list:
    """The registered metrics this project ships (not the engine tests' `test-*` ones nor third-party ones)."""
    return [p for p in metrics.plugins() if p.factory.__module__.startswith("benchmark.metrics")]


def toy_metrics() -> list[str]:
    """The built-in metrics whose needs the toy context meets; the others need an explainer's audio or codec
    latent (tested in test_audio_quality.py and test_synthesis_metrics.py)."""
    saliency_like = Explanation(attribution=torch.zeros(1, *SPEC.grid))  # a map: no audio, no extras
    return [p.name for p in builtin_metrics()
            if metric_unmet(p.needs, TOY_PROVIDES, saliency_like, TOY_CAPABILITIES) is None]


def test_the_toy_context_offers_what_the_metric_filter_assumes():
    ctx = make_context()
    assert ctx.batch.tf_mask is not None and ctx.batch.frame_labels is not None and ctx.batch.waveform is None
    assert ctx.explanation.audio is None and not ctx.explanation.extra
    assert ctx.detector.reconstruct(ctx.batch.x).shape == ctx.batch.x.shape
    assert set(ctx.detector.layers()) == {"offset", "band"}


def test_registry_lists_the_metric_families():
    names = toy_metrics()
    for name in ("ff", "ff_norm", "ff_segment", "chunk_f1", "event_f1", "relevance_mass_accuracy",
                 "relevance_mass_accuracy_time", "pointing_game", "pixel_auroc", "pixel_auprc", "iou_at_percentile",
                 "top_k_intersection", "ai", "ad", "ag", "ff_out", "fid_in", "sparseness", "complexity",
                 "deletion_auc", "insertion_auc", "randomisation_spearman", "randomisation_ssim",
                 "sensitivity_max", "infidelity"):
        assert name in names
    for name in names:
        spec = metrics.get(name).spec
        assert spec.family in FAMILIES, name
        assert isinstance(spec.higher_is_better, bool)
    # a built-in metric left out of this file needs what only an explainer's audio or latent gives
    for plugin in builtin_metrics():
        if plugin.name not in names:
            assert plugin.needs & EXPLANATION_OUTPUTS, f"{plugin.name} needs {sorted(plugin.needs)}: extend the toy"


@pytest.fixture(scope="module")
def context() -> MetricContext:
    return make_context()


@pytest.mark.parametrize("name", toy_metrics())
def test_every_metric_returns_finite_per_clip_values(name, context):
    result = metrics.get(name).factory(context)
    assert result.values
    for label, values in result.values.items():
        assert values.shape == (4,), (name, label)
        assert torch.isfinite(values).all(), (name, label)
    if metrics.get(name).spec.family in {"localisation", "temporal"}:
        chance = result.chance
        assert chance is not None
        for level in (chance.values() if isinstance(chance, dict) else [chance]):
            assert level.shape == (4,) and torch.isfinite(level).all(), name
        if isinstance(chance, dict):
            assert list(chance) == list(result.values), name
    if name == "event_f1":  # thresholded at the clip's annotated share by default, one value per clip
        assert list(result.values) == ["events"]
    elif metrics.get(name).spec.params == "percentile":
        assert list(result.values) == [str(p) for p in range(90, 100)]
    assert result.forward_passes >= 0 and result.backward_passes >= 0


def test_ff_wrapper_equals_the_function_and_charges_shared_passes_once():
    ctx = make_context()
    ff_result = metrics.get("ff").factory(ctx)
    norm_result = metrics.get("ff_norm").factory(ctx)
    reference = ctx.detector.reference(ctx.batch.x)
    want = ff(ctx.detector.score, ctx.batch.x, reference, ctx.explanation.attribution)
    want_norm = ff_norm(ctx.detector.score, ctx.batch.x, reference, ctx.explanation.attribution,
                        ctx.detector.normal_median_score)
    for i, p in enumerate(range(90, 100)):
        assert torch.allclose(ff_result.values[str(p)], want[i])
        assert torch.allclose(norm_result.values[str(p)], want_norm[i])
    # the distinct percentile selections of each clip (on this 16-frame toy several p select the same frames)
    # + the reference, run once for both metrics
    frames = peak_frames(ctx.explanation.attribution, list(range(90, 100)), "area")
    distinct = np.mean([len({tuple(frames[k, b].tolist()) for k in range(10)}) for b in range(frames.shape[1])])
    assert 1 < distinct < 10
    assert ff_result.forward_passes == pytest.approx(1 + distinct) and norm_result.forward_passes == 0
    # the saliency map points at the anomaly: replacing its top frames removes most of the excess
    assert want[0].min() > 0.3
    # deletion and insertion share 2n - 1 = 19 inputs (the reference is already paid for)
    assert metrics.get("deletion_auc").factory(ctx).forward_passes == 19
    assert metrics.get("insertion_auc").factory(ctx).forward_passes == 0
    # the runner builds a fresh context with fresh tensors for every metric: equal values still share
    copy = replace(ctx, batch=ctx.batch.select(slice(None)),
                   explanation=replace(ctx.explanation, attribution=ctx.explanation.attribution.clone()))
    assert copy.batch.x is not ctx.batch.x
    assert metrics.get("ff").factory(copy).forward_passes == 0
    # another batch recomputes (no stale values across batches)
    other = make_context(seed=5)
    assert metrics.get("ff_norm").factory(other).forward_passes > 1


def test_chunk_f1_and_localisation_on_the_toy_are_high_for_saliency_and_chance_for_energy_noise():
    ctx = make_context()
    f1 = metrics.get("chunk_f1").factory(ctx)
    assert f1.values["99"].min() > 0.6
    auroc = metrics.get("pixel_auroc").factory(ctx)
    assert auroc.values[""].min() > 0.9 and torch.equal(auroc.chance, torch.full((4,), 0.5, dtype=torch.float64))
    rma = metrics.get("relevance_mass_accuracy").factory(ctx)
    assert torch.allclose(rma.chance, ctx.batch.tf_mask.double().mean((1, 2)))
    rma_time = metrics.get("relevance_mass_accuracy_time").factory(ctx)
    assert torch.allclose(rma_time.chance, ctx.batch.frame_labels.double().mean(1))
    top = metrics.get("top_k_intersection").factory(ctx, top_fraction=0.01)  # k = 3 bins
    assert top.values[""].min() == 1.0


def test_lmac_wrappers_follow_the_masked_probabilities():
    ctx = make_context()
    results = {n: metrics.get(n).factory(ctx) for n in ("ai", "ad", "ag", "ff_out", "fid_in")}
    # the masked-in and masked-out passes only: the default fill needs no detector reference pass
    assert results["ai"].forward_passes == 2 and sum(r.forward_passes for r in results.values()) == 2
    det = ctx.detector
    flat = ctx.explanation.attribution.flatten(1)
    mask = (flat >= flat.sort(dim=1, descending=True).values[:, 65:66]).reshape(ctx.explanation.attribution.shape)
    assert int(mask[0].sum()) == round(0.2 * 8 * 41)
    # removed bins take each band's mean normal log-mel, not the detector's own output
    fill = det.normal_mean.mean(dim=-1, keepdim=True).expand_as(ctx.batch.x)
    kept, removed = masked_in_out(ctx.batch.x, fill, mask.float())
    p, o, q = det.p_from_score(ctx.scores), det.p_from_score(det.score(kept)), det.p_from_score(det.score(removed))
    p, o, q = p.double(), o.double(), q.double()
    assert torch.allclose(results["ff_out"].values["anomalous"], p - q)
    assert torch.allclose(results["ai"].values["anomalous"], 100.0 * (o > p).double())
    assert torch.allclose(results["ad"].values["anomalous"], 100 * (p - o).clamp(min=0) / (p + 1e-10))
    # the anomalous clips are predicted anomalous, so both modes agree here
    assert torch.equal(results["fid_in"].values["predicted"], results["fid_in"].values["anomalous"])
    # an explainer's own mask is used as given
    own = replace(ctx, explanation=replace(ctx.explanation, mask=torch.ones_like(ctx.explanation.attribution)))
    kept_all = metrics.get("ff_out").factory(own).values["anomalous"]
    assert torch.allclose(kept_all, p - det.p_from_score(det.score(fill)).double())
    # fill = "reference": the detector's normal counterpart, as before
    fresh = make_context()
    by_reference = metrics.get("ff_out").factory(fresh, fill="reference").values["anomalous"]
    _, removed_ref = masked_in_out(fresh.batch.x, det.reference(fresh.batch.x), mask.float())
    assert torch.allclose(by_reference, p - det.p_from_score(det.score(removed_ref)).double())
    with pytest.raises(ValueError, match="L-MAC fill 'zeros'"):
        metrics.get("ai").factory(make_context(), fill="zeros")


# --- sanity --------------------------------------------------------------------------------------


def test_cascade_randomises_from_the_top_and_leaves_the_detector_alone():
    seen = []

    def recording(detector, batch):
        seen.append((detector.band.weight.detach().clone(), detector.offset.bias.detach().clone()))
        return saliency(detector, batch)

    ctx = make_context(recording)
    seen.clear()
    band, offset = ctx.detector.band.weight.detach().clone(), ctx.detector.offset.bias.detach().clone()
    result = metrics.get("randomisation_spearman").factory(ctx, n_steps=2)
    assert list(result.values) == ["top50", "top100"]
    (band1, offset1), (band2, offset2) = seen
    assert not torch.equal(band1, band) and torch.equal(offset1, offset)  # step 1: the top layer only
    assert torch.equal(band2, band1) and not torch.equal(offset2, offset)  # step 2: cumulative
    assert torch.equal(ctx.detector.band.weight, band) and torch.equal(ctx.detector.offset.bias, offset)
    assert result.forward_passes == 2 and result.backward_passes == 2
    # the SSIM metric of the same context reuses the randomised maps: no further passes
    assert metrics.get("randomisation_ssim").factory(ctx, n_steps=2).forward_passes == 0
    assert len(seen) == 2


def test_randomisation_separates_a_model_dependent_map_from_the_input_energy():
    dependent = metrics.get("randomisation_spearman").factory(make_context(saliency))
    independent = metrics.get("randomisation_spearman").factory(make_context(energy))
    assert torch.allclose(independent.values["top100"], torch.ones(4, dtype=torch.float64))
    assert dependent.values["top100"].max() < 0.9
    ssim_energy = metrics.get("randomisation_ssim").factory(make_context(energy))
    assert torch.allclose(ssim_energy.values["top100"], torch.ones(4, dtype=torch.float64))


def np_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """skimage-style SSIM (Gaussian weights, sigma 1.5, population covariance, border cropped) on maps
    scaled to [0, 1], with scipy's Gaussian filter."""
    def unit(m):
        span = m.max() - m.min()
        return (m - m.min()) / span if span > 0 else np.zeros_like(m)

    x, y = unit(a), unit(b)
    f = lambda m: scipy.ndimage.gaussian_filter(m, sigma=1.5, truncate=3.5)  # noqa: E731  (11-tap window)
    mx, my = f(x), f(y)
    vx, vy, cxy = f(x * x) - mx ** 2, f(y * y) - my ** 2, f(x * y) - mx * my
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    return float(s[5:-5, 5:-5].mean())


def test_similarities_match_scipy():
    g = torch.Generator().manual_seed(11)
    a = torch.randn(3, 16, 30, generator=g, dtype=torch.float64)
    r = torch.stack([a + 0.5 * torch.randn(3, 16, 30, generator=g, dtype=torch.float64),
                     torch.randn(3, 16, 30, generator=g, dtype=torch.float64)])
    rho, sim = randomisation_spearman(a, r), randomisation_ssim(a, r)
    assert rho.shape == sim.shape == (2, 3)
    for k in range(2):
        for i in range(3):
            assert rho[k, i].item() == pytest.approx(scipy.stats.spearmanr(a[i].flatten(), r[k, i].flatten())[0])
            assert sim[k, i].item() == pytest.approx(np_ssim(a[i].numpy(), r[k, i].numpy()), abs=1e-5)
    assert (rho[0] > rho[1]).all() and (sim[0] > sim[1]).all()
    # ties: Spearman on average ranks, as scipy
    tied = torch.randint(0, 3, (1, 5, 6), generator=g).double()
    other = torch.randint(0, 3, (1, 1, 5, 6), generator=g).double()
    assert randomisation_spearman(tied, other).item() == pytest.approx(
        scipy.stats.spearmanr(tied.flatten(), other.flatten())[0])
    assert ssim(a, a).tolist() == pytest.approx([1.0, 1.0, 1.0], abs=1e-6)
    assert randomisation_spearman(a, torch.zeros(1, 3, 16, 30, dtype=torch.float64)).tolist() == [[0.0, 0.0, 0.0]]


# --- robustness ----------------------------------------------------------------------------------


def test_infidelity_matches_its_definition_with_the_same_noise():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 1, 4, 5, generator=g, dtype=torch.float64)
    w = torch.randn(1, 1, 4, 5, generator=g, dtype=torch.float64)
    score = lambda v: (w * v ** 2).sum(dim=(1, 2, 3))  # noqa: E731
    attribution = torch.randn(3, 4, 5, generator=g, dtype=torch.float64)
    got = infidelity(score, x, attribution, generator=torch.Generator().manual_seed(7), n_perturb_samples=6)
    noise_g = torch.Generator().manual_seed(7)
    unit = torch.randn((18, 1, 4, 5), generator=noise_g, dtype=torch.float64)
    for i in range(3):
        std = float(x[i].flatten().std())
        noise = unit[i * 6:(i + 1) * 6].numpy() * 0.05 * std
        xi, wi, ai = x[i].numpy(), w[0].numpy(), attribution[i].numpy()
        delta = np.array([(wi * xi ** 2).sum() - (wi * (xi - n) ** 2).sum() for n in noise])
        linear = np.array([(ai * n[0]).sum() for n in noise])
        beta = (linear * delta).mean() / (linear ** 2).mean()
        assert got[i].item() == pytest.approx(((beta * linear - delta) ** 2).mean(), rel=1e-9)
    # the exact gradient of a linear score is a perfect explanation: infidelity 0
    linear_score = lambda v: (w * v).sum(dim=(1, 2, 3))  # noqa: E731
    exact = infidelity(linear_score, x, w[:, 0].expand(3, 4, 5), generator=torch.Generator().manual_seed(1))
    assert torch.allclose(exact, torch.zeros(3, dtype=torch.float64), atol=1e-12)


def test_sensitivity_max_matches_its_definition_with_the_same_noise():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 1, 3, 4, generator=g, dtype=torch.float64)
    explain = lambda v: v[:, 0] ** 2  # noqa: E731
    got = sensitivity_max(explain, x, explain(x), generator=torch.Generator().manual_seed(9), n_perturb_samples=5)
    unit = torch.rand((10, 1, 3, 4), generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    for i in range(2):
        std = float(x[i].flatten().std())
        base = x[i, 0].numpy() ** 2
        changes = [np.linalg.norm(((x[i] + (2 * u - 1) * 0.05 * std)[0].numpy()) ** 2 - base) / np.linalg.norm(base)
                   for u in unit[i * 5:(i + 1) * 5]]
        assert got[i].item() == pytest.approx(max(changes), rel=1e-9)
    constant = sensitivity_max(lambda v: torch.ones(len(v), 3, 4, dtype=torch.float64), x,
                               torch.ones(2, 3, 4, dtype=torch.float64), generator=torch.Generator().manual_seed(0))
    assert torch.equal(constant, torch.zeros(2, dtype=torch.float64))


def test_sensitivity_perturbs_the_waveform_when_there_is_one():
    seen = []

    def recording(detector, batch):
        seen.append(batch)
        return saliency(detector, batch)

    ctx = make_context(recording, b=2, with_waveform=True)
    seen.clear()
    result = metrics.get("sensitivity_max").factory(ctx, n_perturb_samples=3)
    perturbed, = seen
    assert perturbed.ids == ["clip0"] * 3 + ["clip1"] * 3
    assert not torch.equal(perturbed.waveform[0], ctx.batch.waveform[0])
    assert torch.allclose(perturbed.x, LogMel(SPEC)(perturbed.waveform), atol=1e-5)
    assert result.forward_passes == 3 and result.backward_passes == 3
    assert (result.values[""] > 0).all()


def test_sensitivity_max_takes_maps_laid_out_as_views():
    # a mel filterbank's output is a transposed view; Captum reshapes maps with `view`
    def transposed(detector, batch):
        e = saliency(detector, batch)
        return replace(e, attribution=e.attribution.transpose(1, 2).contiguous().transpose(1, 2))

    ctx = make_context(transposed, with_waveform=True)
    assert not ctx.explanation.attribution.is_contiguous()
    result = metrics.get("sensitivity_max").factory(ctx, n_perturb_samples=2)
    assert torch.isfinite(result.values[""]).all() and (result.values[""] >= 0).all()


def test_a_subset_metric_between_deletion_and_insertion_does_not_evict_their_shared_curves():
    """The per-context memo: insertion reuses deletion's perturbation curves although a metric on a clip subset
    of the same batch ran in between (the thread-local single-entry memo made it pay its passes again)."""
    ctx = make_context()
    deletion = metrics.get("deletion_auc").factory(ctx)
    assert deletion.forward_passes == 20  # the reference and 2 * 10 - 1 steps, charged to whoever computed them
    sub = ctx.subset(torch.tensor([0, 2]))
    assert ctx.subset(torch.tensor([0, 2])) is sub and sub.memo is not ctx.memo
    metrics.get("deletion_auc").factory(sub)
    insertion = metrics.get("insertion_auc").factory(ctx)
    assert insertion.forward_passes == 0
