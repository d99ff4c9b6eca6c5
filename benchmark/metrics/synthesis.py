"""Synthesis metrics (EnCodec latent explanations, AudioXgen): does the listenable explanation keep the
detector's decision, and does removing its important part change it?

For a keep fraction q in {100, 83, 63, 42, 21, 10, 0} %, the q % latent elements with the LARGEST
attribution are kept and every other element is replaced by the latent of a fixed noise clip; the
result is decoded and scored. `agreement[q]` = 1 when the detector's decision on it equals the decision
on the codec reconstruction Dec(Enc(w)), so codec distortion is not counted against the explanation.
`drop[q]` = 1 - agreement of the complement (those q % most important elements replaced by the fill, the
rest kept): the agreement lost when the important part is removed. Baselines: the same sweep with a
random latent selection (`*_random`), and input-space Integrated Gradients with waveform zeroing
(`*_input_ig`, compared with the decision on the clip itself, as no codec is involved). The codec's own
reconstruction quality (`codec_si_sdr`, `codec_logmel_l1`, `codec_floor_met`) is published beside every
result that uses it.

Every decoded input (explanation, random baseline, reconstruction reference) is decided at the codec-domain
threshold the explainer calibrated (`calibrated_threshold` of the detector's scores of decoded held-out
normals), not at the detector's EER threshold: a decoded clip is not the clip, and where the codec shifts
every score past that threshold, the decoded normals' included, every decision read anomalous: agreement 1 and
drop 0 at every keep fraction, for the explanation and the random baseline alike. The input-IG baseline
involves no codec and keeps the detector's own decision. A sweep whose ends agree
(`sweep_saturated`) says nothing about the explanation; the leaderboard says so instead of ranking it.

What the explainer leaves in `Explanation.extra` (batch-first tensors follow clip selection):
  "latent": z `[B, C, L]`; "latent_attribution": `[B, C, L]`, larger = more important;
  "latent_fill": `[B, C, L]` the noise latent; "codec_reconstruction": Dec(Enc(w)) `[B, N]` at the
  dataset rate; "codec_threshold": `[B]` the decision threshold for decoded inputs; "codec_floor_met":
  `[B]` 1.0 where the codec reached its stated reconstruction floor, else 0.0; "synthesis": a
  `LatentDecoder` (`decode(z: [n, C, L]) -> [n, N]` at the dataset rate and clip length, and
  `examples_per_forward`, the latents one decode may hold).

Shapes: `K` keep fractions, `B` clips, `E` elements per clip (C·L latent elements or N samples).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import torch

from ..compute import examples_per_forward
from ..features import LogMel
from ..needs import Need
from ..registry import metrics
from ._passes import charge, forward_bound, result, shared
from ._ranking import descending_rank
from .context import MetricContext, MetricResult

KEEP_PERCENT = (100, 83, 63, 42, 21, 10, 0)
INPUT_IG_STEPS = 50  # the paper's setting for its input-space baseline

ScoreFn = Callable[[torch.Tensor], torch.Tensor]


class LatentDecoder(Protocol):
    examples_per_forward: int

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents `[n, C, L]` -> waveforms `[n, N]` at the dataset rate and clip length."""
        ...


# --- pure batched functions -------------------------------------------------------------------------
def keep_masks(attribution: torch.Tensor, percents: Sequence[float] = KEEP_PERCENT) -> torch.Tensor:
    """The round(q/100 · E) elements of each clip with the largest attribution, for every q (ties in index
    order): `[B, ...] -> [K, B, ...]` bool. Descending on purpose: the reference script sorted ascending
    and so kept the least important elements."""
    flat = attribution.flatten(1)
    rank = descending_rank(flat)
    counts = torch.tensor([int(round(q / 100 * flat.shape[1])) for q in percents], device=flat.device)
    return (rank.unsqueeze(0) < counts[:, None, None]).reshape(len(percents), *attribution.shape)


def keep_mask(attribution: torch.Tensor, fraction: float) -> torch.Tensor:
    """One keep fraction in [0, 1]: `[B, ...] -> [B, ...]` bool."""
    return keep_masks(attribution, (100 * fraction,))[0]


def fill_unselected(z: torch.Tensor, fill: torch.Tensor, selected: torch.Tensor) -> torch.Tensor:
    """Selected elements from z, the others from the fill: `[B, ...], [B, ...], [K, B, ...] -> [K, B, ...]`."""
    return torch.where(selected, z.unsqueeze(0), fill.unsqueeze(0))


def decoded_scores(synthesis: LatentDecoder, logmel: LogMel, score: ScoreFn, latents: torch.Tensor) -> torch.Tensor:
    """Anomaly scores of decoded latents without gradients, `[n, C, L] -> [n]`, in chunks of the decoder's
    `examples_per_forward` (a 10-s decode at 24 kHz holds far more activations than a detector pass)."""
    chunk = max(1, synthesis.examples_per_forward)
    with torch.no_grad():
        return torch.cat([score(logmel(synthesis.decode(latents[i:i + chunk]))) for i in range(0, len(latents), chunk)])


def waveform_scores(logmel: LogMel, score: ScoreFn, waveforms: torch.Tensor,
                    per_forward: int | None = None) -> torch.Tensor:
    """Anomaly scores of waveforms without gradients, `[n, N] -> [n]`, in chunks of `per_forward` (default: the
    device's bound, `benchmark.compute`) like the other metrics."""
    chunk = per_forward or examples_per_forward(waveforms.device)
    with torch.no_grad():
        return torch.cat([score(logmel(waveforms[i:i + chunk])) for i in range(0, len(waveforms), chunk)])


def normal_share(normal_scores: torch.Tensor, threshold: torch.Tensor | float) -> float:
    """The share of held-out normal inputs a threshold decides normal (score below it): `[M] -> float`."""
    return float((normal_scores < threshold).double().mean())


def calibrated_threshold(normal_scores: torch.Tensor, share: float) -> torch.Tensor:
    """The decision threshold that decides the given `share` of held-out normal inputs (decoded by the codec)
    normal: the `share` quantile of their scores, `[M] -> []`."""
    return torch.quantile(normal_scores.double(), share).to(normal_scores.dtype)


def threshold_decisions(scores: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """Anomalous (1) where the score reaches the clip's threshold (`>=`, like `Detector.decision`), else 0:
    `[..., B], [B] -> [..., B]` long."""
    return (scores >= threshold).long()


def sweep_saturated(agreement_by_keep: Mapping[float | str, float]) -> str | None:
    """Why a keep sweep says nothing, or None: the mean agreement at keep 100 % (everything kept) and 0 %
    (everything replaced by the fill) are equal, so no kept fraction can change the decision on average.
    Keys are keep percentages (numbers or their table labels, "100" and "0")."""
    by_percent = {float(q): float(v) for q, v in agreement_by_keep.items()}
    missing = [q for q in (100.0, 0.0) if q not in by_percent]
    if missing:
        raise ValueError(f"sweep_saturated: no agreement at keep {', '.join(f'{q:g} %' for q in missing)}; pass "
                         "the whole sweep (both ends)")
    full, empty = by_percent[100.0], by_percent[0.0]
    if not math.isclose(full, empty, abs_tol=1e-9):
        return None
    return (f"saturated sweep: agreement {full:.2f} with every latent element kept and with none, so the decision "
            "does not depend on which elements are kept")


def synthesis_agreement(decisions: torch.Tensor, reference_decisions: torch.Tensor) -> torch.Tensor:
    """1 where the decision on the synthesised input equals the reference decision: `[K, B], [B] -> [K, B]`."""
    return (decisions == reference_decisions.unsqueeze(0)).double()


def synthesis_drop(removed_decisions: torch.Tensor, reference_decisions: torch.Tensor) -> torch.Tensor:
    """Agreement lost when the important part is removed: 1 - agreement of the complement, `[K, B]`."""
    return 1.0 - synthesis_agreement(removed_decisions, reference_decisions)


def si_sdr(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Scale-invariant signal-to-distortion ratio in dB (Le Roux et al. 2019), zero-mean: `[B, N] -> [B]`."""
    s = target.double() - target.double().mean(-1, keepdim=True)
    e = estimate.double() - estimate.double().mean(-1, keepdim=True)
    tiny = torch.finfo(torch.float64).tiny
    scale = (e * s).sum(-1, keepdim=True) / s.pow(2).sum(-1, keepdim=True).clamp_min(tiny)
    projection = scale * s
    return 10 * torch.log10(projection.pow(2).sum(-1).clamp_min(tiny) / (e - projection).pow(2).sum(-1).clamp_min(tiny))


def logmel_l1(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute log-mel difference in the grid's log units (dB or log10): `[B, 1, F, T] -> [B]`."""
    return (estimate.double() - target.double()).abs().flatten(1).mean(1)


# --- what the registered metrics share within a batch ----------------------------------------------
def _logmel(ctx: MetricContext) -> LogMel:
    return shared(ctx, ("synthesis", "logmel"), lambda: LogMel(ctx.spec).to(ctx.batch.x.device))


def _reconstruction_decisions(ctx: MetricContext) -> torch.Tensor:
    """The decision on the codec reconstruction Dec(Enc(w)) at the codec-domain threshold: `[B]`."""
    def compute() -> torch.Tensor:
        extra = ctx.explanation.extra
        scores = waveform_scores(_logmel(ctx), ctx.detector.score, extra["codec_reconstruction"],
                                 forward_bound(ctx))
        return threshold_decisions(scores, extra["codec_threshold"])
    return shared(ctx, ("synthesis", "reconstruction"), compute, passes=1.0)


def _latent_selection(ctx: MetricContext, selection: str) -> torch.Tensor:
    """Keep masks `[K, B, C, L]` by the explainer's attribution, or by a random ranking drawn once per batch
    from the context's generator (so the random kept and removed parts are complements of each other)."""
    if selection == "attribution":
        return keep_masks(ctx.explanation.extra["latent_attribution"])
    z = ctx.explanation.extra["latent"]
    ranking = shared(ctx, ("synthesis", "random_ranking"),
                     lambda: torch.rand(z.shape, generator=ctx.generator).to(z.device))
    return keep_masks(ranking)


def _latent_decisions(ctx: MetricContext, selection: str, part: str) -> torch.Tensor:
    """Decisions `[K, B]` on the decoded sweep, at the codec-domain threshold: the selection kept ("kept") or
    replaced ("removed")."""
    def compute() -> torch.Tensor:
        extra = ctx.explanation.extra
        z, fill = extra["latent"], extra["latent_fill"]
        selected = _latent_selection(ctx, selection)
        latents = fill_unselected(z, fill, selected if part == "kept" else ~selected)
        scores = decoded_scores(extra["synthesis"], _logmel(ctx), ctx.detector.score, latents.flatten(0, 1))
        return threshold_decisions(scores.reshape(latents.shape[:2]), extra["codec_threshold"])
    return shared(ctx, ("synthesis", selection, part), compute, passes=float(len(KEEP_PERCENT)))


def input_ig_attribution(score: ScoreFn, logmel: LogMel, waveform: torch.Tensor, *, n_steps: int = INPUT_IG_STEPS,
                         internal_batch_size: int) -> torch.Tensor:
    """Integrated Gradients of the anomaly score over the waveform samples, zero baseline: `[B, N] -> [B, N]`.

    Clips go to Captum in groups of half the internal batch, as Captum puts at least two steps of every
    clip of a call into one forward."""
    from captum.attr import IntegratedGradients  # lazy: captum costs seconds at import
    method = IntegratedGradients(lambda w: score(logmel(w)))
    group = max(1, internal_batch_size // 2)
    with torch.enable_grad():
        return torch.cat([method.attribute(waveform[i:i + group], baselines=torch.zeros_like(waveform[i:i + group]),
                                           n_steps=n_steps, internal_batch_size=internal_batch_size).detach()
                          for i in range(0, len(waveform), group)])


def _clip_decisions(ctx: MetricContext) -> torch.Tensor:
    """The decision on the clip's own waveform through the same log-mel path as the sweep: `[B]`."""
    def compute() -> torch.Tensor:
        return ctx.detector.decision(waveform_scores(_logmel(ctx), ctx.detector.score, ctx.batch.waveform,
                                                     forward_bound(ctx)))
    return shared(ctx, ("synthesis", "clip"), compute, passes=1.0)


def _input_ig_decisions(ctx: MetricContext, part: str) -> torch.Tensor:
    """Decisions `[K, B]` on waveforms whose top-q % samples by input IG are kept (the rest zeroed) or zeroed."""
    def attribution() -> torch.Tensor:
        charge(ctx, forward=float(INPUT_IG_STEPS), backward=float(INPUT_IG_STEPS))
        return input_ig_attribution(ctx.detector.score, _logmel(ctx), ctx.batch.waveform,
                                    # gradients held for the backward: half the run's bound
                                    internal_batch_size=max(1, forward_bound(ctx) // 2))

    def compute() -> torch.Tensor:
        w = ctx.batch.waveform
        selected = keep_masks(shared(ctx, ("synthesis", "input_ig_attribution"), attribution))
        kept = selected if part == "kept" else ~selected
        waves = torch.where(kept, w.unsqueeze(0), torch.zeros((), dtype=w.dtype, device=w.device))
        scores = waveform_scores(_logmel(ctx), ctx.detector.score, waves.flatten(0, 1), forward_bound(ctx))
        return ctx.detector.decision(scores).reshape(waves.shape[:2])
    return shared(ctx, ("synthesis", "input_ig", part), compute, passes=float(len(KEEP_PERCENT)))


def _by_keep_percent(values: torch.Tensor) -> dict[str, torch.Tensor]:
    return {str(q): v for q, v in zip(KEEP_PERCENT, values, strict=True)}


# the live codec (`extra["synthesis"]`) cannot be stored: these metrics run with the explainer; each charges the
# detector passes it triggered (a decoded sweep, a reference decision, the input IG), and a metric of the same
# batch that reuses them is charged nothing for them
LATENT_NEEDS = {Need.EXPLANATION_LATENT, Need.EXPLANATION_SYNTHESIS}


@metrics.register("agreement", summary="decision on the explanation (top-q % latent elements by attribution kept, "
                  "the rest from a noise latent) equals the decision on the codec reconstruction",
                  version=2, needs=LATENT_NEEDS, family="synthesis", higher_is_better=True, params="keep_percent")
def agreement_metric(ctx: MetricContext) -> MetricResult:
    values = synthesis_agreement(_latent_decisions(ctx, "attribution", "kept"), _reconstruction_decisions(ctx))
    return result(ctx, _by_keep_percent(values))


@metrics.register("drop", summary="agreement lost when the top-q % latent elements by attribution are replaced by "
                  "the noise latent (the rest kept)", version=2, needs=LATENT_NEEDS, family="synthesis",
                  higher_is_better=True, params="keep_percent")
def drop_metric(ctx: MetricContext) -> MetricResult:
    values = synthesis_drop(_latent_decisions(ctx, "attribution", "removed"), _reconstruction_decisions(ctx))
    return result(ctx, _by_keep_percent(values))


@metrics.register("agreement_random", summary="baseline of agreement: a random q % of the latent elements kept",
                  version=2, needs=LATENT_NEEDS, family="synthesis", higher_is_better=True, params="keep_percent")
def agreement_random_metric(ctx: MetricContext) -> MetricResult:
    values = synthesis_agreement(_latent_decisions(ctx, "random", "kept"), _reconstruction_decisions(ctx))
    return result(ctx, _by_keep_percent(values))


@metrics.register("drop_random", summary="baseline of drop: a random q % of the latent elements replaced",
                  version=2, needs=LATENT_NEEDS, family="synthesis", higher_is_better=True, params="keep_percent")
def drop_random_metric(ctx: MetricContext) -> MetricResult:
    values = synthesis_drop(_latent_decisions(ctx, "random", "removed"), _reconstruction_decisions(ctx))
    return result(ctx, _by_keep_percent(values))


@metrics.register("agreement_input_ig", summary="baseline of agreement: the top-q % waveform samples by input-space "
                  "Integrated Gradients kept, the rest zeroed; compared with the decision on the clip",
                  version=1, needs=LATENT_NEEDS | {Need.WAVEFORM}, family="synthesis", higher_is_better=True,
                  params="keep_percent")
def agreement_input_ig_metric(ctx: MetricContext) -> MetricResult:
    values = synthesis_agreement(_input_ig_decisions(ctx, "kept"), _clip_decisions(ctx))
    return result(ctx, _by_keep_percent(values))


@metrics.register("drop_input_ig", summary="baseline of drop: the top-q % waveform samples by input-space "
                  "Integrated Gradients zeroed", version=1, needs=LATENT_NEEDS | {Need.WAVEFORM}, family="synthesis",
                  higher_is_better=True, params="keep_percent")
def drop_input_ig_metric(ctx: MetricContext) -> MetricResult:
    values = synthesis_drop(_input_ig_decisions(ctx, "removed"), _clip_decisions(ctx))
    return result(ctx, _by_keep_percent(values))


@metrics.register("codec_si_sdr", summary="SI-SDR (dB) of the codec reconstruction Dec(Enc(w)) against the clip: "
                  "the quality of the codec the synthesis explanation is built on", version=1,
                  needs=LATENT_NEEDS | {Need.WAVEFORM}, family="synthesis", higher_is_better=True)
def codec_si_sdr_metric(ctx: MetricContext) -> MetricResult:
    return MetricResult(values={"": si_sdr(ctx.explanation.extra["codec_reconstruction"], ctx.batch.waveform)})


@metrics.register("codec_logmel_l1", summary="mean |log-mel(Dec(Enc(w))) - log-mel(w)| in the grid's log units",
                  version=1, needs=LATENT_NEEDS, family="synthesis", higher_is_better=False)
def codec_logmel_l1_metric(ctx: MetricContext) -> MetricResult:
    with torch.no_grad():
        recon = _logmel(ctx)(ctx.explanation.extra["codec_reconstruction"])
    return MetricResult(values={"": logmel_l1(recon, ctx.batch.x)})


@metrics.register("codec_floor_met", summary="1 where the codec reached its stated reconstruction floor (log-mel L1 "
                  "of the held-out normals), else 0: synthesis values of a codec short of it carry the fact",
                  version=1, needs=LATENT_NEEDS, family="synthesis", higher_is_better=True, ranked=False)
def codec_floor_met_metric(ctx: MetricContext) -> MetricResult:
    return MetricResult(values={"": ctx.explanation.extra["codec_floor_met"].double()})
