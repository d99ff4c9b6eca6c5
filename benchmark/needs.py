"""What a plugin needs, and the one resolver that says whether a cell meets it.

An explainer or a metric declares `needs={...}` in its registration; each need is met by exactly one
source: the dataset (its clips carry a waveform or a kind of ground truth), the detector (a capability it
declares), the explanation (the listenable audio or an extra the explainer returns), or the explainer itself
(it takes gradients of the score, which every detector's score offers, or it trains). Cells, the evaluate
step and the conformance checks all ask `unmet` here; no other module spells a need.

`Need` is a `str` enum: `Need.TF_MASK == "tf_mask"`, and needs stay plain strings in JSON and listings.
"""
from __future__ import annotations

from collections.abc import Iterable
from enum import Enum, StrEnum
from typing import Any


class Need(StrEnum):
    """One thing an explainer or metric requires of the cell it runs in."""

    WAVEFORM = "waveform"                    # the clip's audio `[B, N]` (not feature-only data)
    TF_MASK = "tf_mask"                      # time-frequency ground truth `[B, F, T]`
    INTERVALS = "intervals"                  # annotated event times
    AUDIO = "audio"                          # the anomaly's own waveform
    RECONSTRUCTION = "reconstruction"        # the detector's `reconstruct(x)`
    LAYERS = "layers"                        # the detector's `layers()`
    EMBEDDING = "embedding"                  # the detector's embeddings
    EXPLANATION_AUDIO = "explanation_audio"  # a listenable explanation (`Explanation.audio`)
    EXPLANATION_LATENT = "explanation_latent"        # `Explanation.extra["latent"]`
    EXPLANATION_SYNTHESIS = "explanation_synthesis"  # `Explanation.extra["synthesis"]` (live only)
    GRADIENTS = "gradients"                  # gradients of the score in x (every detector's score has them)
    TRAINING = "training"                    # the explainer trains (its class sets `trains = True`)


class Source(Enum):
    """Where a need is met."""

    DATASET = "dataset"
    DETECTOR = "detector"
    EXPLANATION = "explanation"
    EXPLAINER = "explainer"


DATASET_NEEDS = frozenset({Need.WAVEFORM, Need.TF_MASK, Need.INTERVALS, Need.AUDIO})
TRUTH_NEEDS = frozenset({Need.TF_MASK, Need.INTERVALS, Need.AUDIO})  # scored only on clips that carry truth
CAPABILITY_OF = {Need.RECONSTRUCTION: "reconstructs", Need.LAYERS: "layers", Need.EMBEDDING: "embeds"}
DETECTOR_CAPABILITIES = frozenset(CAPABILITY_OF.values())
EXTRA_OF = {Need.EXPLANATION_LATENT: "latent", Need.EXPLANATION_SYNTHESIS: "synthesis"}
EXPLAINER_NEEDS = frozenset({Need.GRADIENTS, Need.TRAINING})


def source(need: Need) -> Source:
    if need in DATASET_NEEDS:
        return Source.DATASET
    if need in CAPABILITY_OF:
        return Source.DETECTOR
    if need in EXPLAINER_NEEDS:
        return Source.EXPLAINER
    return Source.EXPLANATION


# which needs a plugin of each kind may declare: an explainer cannot need an explanation, a metric does not train
ALLOWED = {"explainer": frozenset(n for n in Need if source(n) is not Source.EXPLANATION),
           "metric": frozenset(n for n in Need if source(n) is not Source.EXPLAINER),
           "dataset": DATASET_NEEDS}


def parse_needs(values: Iterable[str], kind: str) -> frozenset[Need]:
    """`values` as needs a plugin of `kind` may declare; ValueError naming the unknown one and the allowed ones."""
    allowed = ALLOWED[kind]
    out = set()
    for value in values:
        need = Need._value2member_map_.get(value)
        if need not in allowed:
            raise ValueError(f"unknown need {value!r}; {kind}s may declare {', '.join(sorted(allowed))}")
        out.add(need)
    return frozenset(out)


def dataset_provides(dataset: Any) -> frozenset[Need]:
    """The dataset needs a dataset instance meets: its `truth` kinds, and `waveform` unless it is feature-only."""
    provides = {Need(t) for t in dataset.truth}
    if dataset.has_waveforms:
        provides.add(Need.WAVEFORM)
    return frozenset(provides)


def is_met(need: Need, *, provides: Iterable[str], capabilities: Iterable[str], explanation: Any = None,
           live_only: Iterable[str] = ()) -> bool:
    """Whether one need is met by the dataset's `provides`, the detector's `capabilities` and (for metrics) the
    `explanation`, counting the extras only a running explainer gives (`live_only`)."""
    where = source(need)
    if where is Source.DATASET:
        return need in set(provides)
    if where is Source.DETECTOR:
        return CAPABILITY_OF[need] in set(capabilities)
    if where is Source.EXPLANATION:
        if need is Need.EXPLANATION_AUDIO:
            return explanation.audio is not None
        return EXTRA_OF[need] in explanation.extra or EXTRA_OF[need] in set(live_only)
    return True  # gradients and training: what the explainer does itself


def unmet(needs: Iterable[Need], **available: Any) -> Need | None:
    """The first need (in name order) that `is_met` says is not met, or None when all are."""
    return next((n for n in sorted(needs) if not is_met(n, **available)), None)


def explainer_unmet(name: str, needs: Iterable[Need], detector: str, capabilities: Iterable[str],
                    provides: Iterable[str]) -> str | None:
    """Why explainer `name` cannot run on this detector and dataset, or None when it can."""
    need = unmet(needs, provides=provides, capabilities=capabilities)
    if need is None:
        return None
    if source(need) is Source.DETECTOR:
        return f"{name} needs {need} but detector {detector} lacks capability {CAPABILITY_OF[need]!r}"
    return f"{name} needs {need}, which the dataset does not provide"


def metric_unmet(needs: Iterable[Need], provides: Iterable[str], explanation: Any, capabilities: Iterable[str],
                 live_only: Iterable[str] = ()) -> str | None:
    """Why a metric cannot be computed in this cell, or None."""
    need = unmet(needs, provides=provides, capabilities=capabilities, explanation=explanation, live_only=live_only)
    if need is None:
        return None
    where = source(need)
    if where is Source.DATASET:
        return f"needs {need}, which the dataset does not provide"
    if need is Need.EXPLANATION_AUDIO:
        return "needs a listenable explanation, which this explainer does not return"
    if where is Source.EXPLANATION:
        return f"needs the explainer's {EXTRA_OF[need]}, which this explainer does not return"
    if need is Need.RECONSTRUCTION:
        return "needs a reconstructing detector"
    return f"needs a detector with capability {CAPABILITY_OF[need]!r}"


def needs_live(needs: Iterable[Need], live_only: Iterable[str]) -> bool:
    """True when a metric needs an extra that only a running explainer gives (not storable)."""
    live = set(live_only)
    return any(EXTRA_OF.get(n) in live for n in needs)
