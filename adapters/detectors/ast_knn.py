"""`ast_knn`: an Audio Spectrogram Transformer trained to tell machines and sections apart, then kNN.

The AST (`transformers.ASTModel`) learns the auxiliary task of classifying the machine/section group
of normal training clips (cross-entropy on a LayerNorm + Linear head over the pooled output). Its
embeddings of the normal training clips form torch memory banks, so gradients flow from the score to
the input log-mel:

- `pooling="clip"`: the pre-logit (pooled) embedding of a clip; score = mean distance to the k nearest
  clip embeddings of the bank (the ASD paper's AST + kNN).
- `pooling="patch"` (default): the last layer's patch tokens; each token's distance to the k nearest
  normal tokens of the same frequency row (any time), the score = mean over the `top_fraction` most
  distant tokens (PatchCore-style). An anomaly of two seconds in one band moves a few tokens and hardly
  the pooled vector: on the quick synthetic data the patch score reaches AUC 0.94 on the planer where
  the clip score stays at 0.67 (same network, seed 0).

The kNN compares a clip's tokens with the bank `bank_chunk` bank tokens at a time, keeping a running top-k
(exact; memory bounded by the chunk, not the bank: at full size the bank holds ~1,200 clips' tokens per
row). `coreset=M` keeps only M tokens per frequency row, chosen by greedy k-center selection (PatchCore's
coreset subsampling): a bank M/(N·C) the size, at a covering-radius cost `k_center` keeps as small as greedy
selection can.

Input adaptation happens inside, differentiably: the canonical log-mel is standardised per mel band
with training statistics (buffers), then either zero-padded to whole 16x16 patches (a small AST
trained from scratch, non-overlapping patches) or, for a local pretrained checkpoint, resized
bilinearly to the checkpoint's `num_mel_bins` x `max_length` and put on the scale its feature
extractor normalised fbanks to.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.nn import functional as F

from benchmark.detector import Budget, Detector, band_statistics, rng_devices, train_epochs
from benchmark.errors import BenchmarkError
from benchmark.registry import detectors

if TYPE_CHECKING:  # transformers costs seconds at import: loaded where a model is built
    from transformers import ASTConfig, ASTModel

METRICS = ("cosine", "euclidean")
POOLINGS = ("patch", "clip")
# ASTFeatureExtractor's AudioSet statistics, used when a checkpoint ships no preprocessor_config.json
AUDIOSET_FBANK_MEAN, AUDIOSET_FBANK_STD = -4.2677393, 4.5689974


def shift_mels(x: torch.Tensor, shift: int) -> torch.Tensor:
    """`x: [B, 1, F, T]` moved `shift` mel bins up (positive) or down, the edge band repeated."""
    if shift == 0:
        return x
    n = x.shape[-2]
    rows = (torch.arange(n, device=x.device) - shift).clamp(0, n - 1)
    return x[..., rows, :]


def _fbank_normalisation(folder: Path) -> tuple[float, float, bool]:
    """(mean, std, do_normalize) of the checkpoint's feature extractor."""
    path = folder / "preprocessor_config.json"
    cfg = json.loads(path.read_text()) if path.is_file() else {}
    return (float(cfg.get("mean", AUDIOSET_FBANK_MEAN)), float(cfg.get("std", AUDIOSET_FBANK_STD)),
            bool(cfg.get("do_normalize", True)))


@detectors.register(
    "ast_knn",
    summary="AST trained on machine+section (and mel-shift) classification of normal clips; score = distance of "
            "its patch tokens (or pooled embedding) to the k nearest normal training ones (cosine by default)",
    version=2,
    capabilities={"embeds", "layers"},
)
class ASTKNN(Detector):
    """AST embedding + kNN memory bank.

    `lr` defaults to 5e-4 from scratch and 1e-5 (the paper's fine-tuning rate) for `pretrained=DIR`,
    whose checkpoint also fixes the architecture (`hidden_size`, `num_layers`, `num_heads`, `patch` unused).
    `mel_shifts`: self-supervised classes added to the auxiliary task — every training clip is also shown
    shifted by each of these many mel bins (edges repeated) and the head tells (group, shift) apart, so
    the embedding has to keep where the spectral lines sit (a speed change, a new tone), not only which
    machine it hears. `[0]` = the plain machine/section task.
    Buffers: `input_mean`, `input_std` `[1, 1, F, 1]`; `bank` `[N, D]` pooled embeddings (the clip score
    and `reference`); `patch_bank` `[R, N*C, D]` last-layer tokens per frequency row (R rows, C time
    columns of patches; unit length for the cosine metric); `bank_logmel` `[N, 1, F, T]` float16 log-mels
    of the same clips (for `reference`); the banks take their sizes from the checkpoint being loaded.
    """

    def __init__(self, k: int = 1, metric: str = "cosine", pooling: str = "patch", top_fraction: float = 0.1,
                 hidden_size: int = 192, num_layers: int = 4, num_heads: int = 3, patch: int = 16,
                 lr: float | None = None, weight_decay: float = 0.01,
                 mel_shifts: list[int] | tuple[int, ...] = (0, -4, 4), pretrained: str | None = None,
                 bank_chunk: int = 8192, coreset: int | None = None):
        super().__init__()
        if metric not in METRICS:
            raise BenchmarkError(f"ast_knn metric {metric!r} is unknown: use one of {', '.join(METRICS)}")
        if pooling not in POOLINGS:
            raise BenchmarkError(f"ast_knn pooling {pooling!r} is unknown: use one of {', '.join(POOLINGS)}")
        if not 0.0 < top_fraction <= 1.0:
            raise BenchmarkError(f"ast_knn top_fraction={top_fraction}: give the share of patch tokens to average, "
                                 "in (0, 1]")
        if k < 1:
            raise BenchmarkError(f"ast_knn k={k}: the number of nearest neighbours must be at least 1")
        shifts = tuple(int(s) for s in mel_shifts)
        if not shifts or len(set(shifts)) != len(shifts) or 0 not in shifts:
            raise BenchmarkError(f"ast_knn mel_shifts={list(mel_shifts)}: give distinct mel-bin shifts including 0, "
                                 "e.g. [0, -4, 4]")
        if bank_chunk < 1:
            raise BenchmarkError(f"ast_knn bank_chunk={bank_chunk}: give the bank tokens compared per step, >= 1")
        if coreset is not None and coreset < 1:
            raise BenchmarkError(f"ast_knn coreset={coreset}: give the patch tokens kept per frequency row (>= 1), "
                                 "or leave it unset for the whole bank")
        self.bank_chunk, self.coreset = bank_chunk, coreset
        self.k, self.metric, self.patch, self.weight_decay = k, metric, patch, weight_decay
        self.mel_shifts = shifts
        self.pooling, self.top_fraction = pooling, top_fraction
        self.hidden_size, self.num_layers, self.num_heads = hidden_size, num_layers, num_heads
        self.pretrained = Path(pretrained) if pretrained else None
        self.lr = lr if lr is not None else (1e-5 if pretrained else 5e-4)
        self.ast: ASTModel | None = None
        self.head: nn.Module | None = None
        self.register_buffer("input_mean", torch.zeros(0))
        self.register_buffer("input_std", torch.ones(0))
        self.register_buffer("bank", torch.zeros(0, 0))
        self.register_buffer("patch_bank", torch.zeros(0, 0, 0))
        self.register_buffer("bank_logmel", torch.zeros(0, dtype=torch.float16))

    # --- construction -------------------------------------------------------------------------
    def build(self, grid: tuple[int, int], n_groups: int) -> None:
        super().build(grid, n_groups)
        device = self.tau.device
        self.grid, self.n_groups = tuple(grid), n_groups
        if self.pretrained is None:
            from transformers import ASTModel
            self.ast = ASTModel(self._scratch_config())
        else:
            self.ast = self._load_pretrained()
        self.ast.to(device)
        self.ast_grid = (self.ast.config.num_mel_bins, self.ast.config.max_length)
        self.head = self._new_head().to(device)
        self.input_mean = torch.zeros(1, 1, grid[0], 1, device=device)
        self.input_std = torch.ones(1, 1, grid[0], 1, device=device)
        self.bank = torch.zeros(0, self.ast.config.hidden_size, device=device)
        self.patch_bank = torch.zeros(self.patch_grid[0], 0, self.ast.config.hidden_size, device=device)
        self.bank_logmel = torch.zeros(0, 1, *grid, dtype=torch.float16, device=device)

    def _scratch_config(self) -> ASTConfig:
        """A small AST over non-overlapping patches covering the whole grid (padded to whole patches)."""
        n_mels, n_frames = self.grid
        p = self.patch
        from transformers import ASTConfig
        return ASTConfig(hidden_size=self.hidden_size, num_hidden_layers=self.num_layers,
                         num_attention_heads=self.num_heads, intermediate_size=4 * self.hidden_size,
                         patch_size=p, frequency_stride=p, time_stride=p,
                         num_mel_bins=math.ceil(n_mels / p) * p, max_length=math.ceil(n_frames / p) * p)

    def _load_pretrained(self) -> ASTModel:
        folder = self.pretrained
        if not (folder / "config.json").is_file():
            raise BenchmarkError(f"ast_knn pretrained={str(folder)!r} holds no config.json: point it at a folder "
                                 "written by save_pretrained (a local Hugging Face AST checkpoint)")
        self.fbank_mean, self.fbank_std, self.fbank_normalised = _fbank_normalisation(folder)
        from transformers import ASTModel
        return ASTModel.from_pretrained(folder, local_files_only=True)

    def _new_head(self) -> nn.Module:
        cfg = self.ast.config
        return nn.Sequential(nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps),
                             nn.Linear(cfg.hidden_size, max(1, self.n_groups) * len(self.mel_shifts)))

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        # the memory bank's length is the number of training clips: take it from the checkpoint
        for name in ("bank", "patch_bank", "bank_logmel"):
            saved = state_dict.get(prefix + name)
            if saved is not None:
                setattr(self, name, torch.empty_like(saved, device=getattr(self, name).device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # --- the score ----------------------------------------------------------------------------
    def ast_input(self, x: torch.Tensor) -> torch.Tensor:
        """Canonical log-mel `[B, 1, F, T]` -> AST `input_values` `[B, max_length, num_mel_bins]`."""
        z = (x - self.input_mean) / self.input_std
        if self.pretrained is None:
            n_mels, n_frames = self.ast_grid
            z = F.pad(z, (0, n_frames - z.shape[-1], 0, n_mels - z.shape[-2]))
        else:
            # read the standardised clip as fbanks with the checkpoint's statistics, then normalise them
            # the way its feature extractor did: (fbank - mean) / (2 std)
            z = F.interpolate(z, size=self.ast_grid, mode="bilinear", align_corners=False)
            z = z * self.fbank_std + self.fbank_mean
            if self.fbank_normalised:
                z = (z - self.fbank_mean) / (2 * self.fbank_std)
        return z[:, 0].transpose(1, 2)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-logit embedding `[B, D]` (the AST's pooled output) of `x: [B, 1, F, T]`."""
        return self.ast(input_values=self.ast_input(x)).pooler_output

    @property
    def patch_grid(self) -> tuple[int, int]:
        """(rows, columns) of the patch tokens: frequency by time."""
        return tuple(self.ast.embeddings.get_shape(self.ast.config))

    def patch_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Last-layer patch tokens `[B, R, C, D]` of `x: [B, 1, F, T]` (the two summary tokens dropped)."""
        tokens = self.ast(input_values=self.ast_input(x)).last_hidden_state[:, 2:]
        return tokens.reshape(len(x), *self.patch_grid, -1)

    def _pairwise(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Distances `[..., M, N]` between rows of `a: [..., M, D]` and `b: [..., N, D]` (b already unit
        length for the cosine metric)."""
        if self.metric == "cosine":
            return 1.0 - F.normalize(a, dim=-1) @ b.transpose(-1, -2)
        # the direct (not matrix-product) form is exact at distance 0, where its gradient is 0, not NaN
        return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")

    def k_center(self, tokens: torch.Tensor, size: int) -> torch.Tensor:
        """Indices `[size]` of a greedy k-center coreset of `tokens: [N, D]` (PatchCore's subsampling): start at
        the token nearest the mean, then repeatedly add the token farthest from those chosen, so every bank
        token lies within the coreset's covering radius of a kept one. Deterministic."""
        with torch.no_grad():
            first = self._pairwise(tokens.mean(dim=0, keepdim=True), tokens)[0].argmin()
            chosen = torch.empty(size, dtype=torch.long, device=tokens.device)
            chosen[0] = first
            gap = self._pairwise(tokens[first][None], tokens)[0]
            for i in range(1, size):
                chosen[i] = gap.argmax()
                gap = torch.minimum(gap, self._pairwise(tokens[chosen[i]][None], tokens)[0])
        return chosen

    def _check_bank(self) -> None:
        if len(self.bank) == 0:
            raise BenchmarkError("ast_knn has an empty memory bank: fit it or load a trained checkpoint first")

    def distances(self, x: torch.Tensor) -> torch.Tensor:
        """Distance `[B, N]` of every clip's pooled embedding to every clip of the bank."""
        self._check_bank()
        bank = F.normalize(self.bank, dim=1) if self.metric == "cosine" else self.bank
        return self._pairwise(self.embed(x), bank)

    def patch_distances(self, x: torch.Tensor) -> torch.Tensor:
        """Mean distance `[B, R, C]` of every patch token to its k nearest bank tokens of the same row."""
        self._check_bank()
        tokens = self.patch_tokens(x)  # [B, R, C, D]
        rows = tokens.permute(1, 0, 2, 3).flatten(1, 2)  # [R, B*C, D]
        nearest = self.nearest_bank_distances(rows).mean(dim=-1)
        return nearest.reshape(len(self.patch_bank), len(x), -1).permute(1, 0, 2)

    def nearest_bank_distances(self, rows: torch.Tensor) -> torch.Tensor:
        """The k smallest distances `[R, M, k]` of `rows: [R, M, D]` to the patch bank of the same row, the bank
        compared `bank_chunk` tokens at a time (a running top-k: the memory is M × bank_chunk, not M × bank)."""
        bank = self.patch_bank
        k = min(self.k, bank.shape[1])
        best = None
        for j in range(0, bank.shape[1], self.bank_chunk):
            d = self._pairwise(rows, bank[:, j:j + self.bank_chunk])
            part = d.topk(min(k, d.shape[-1]), dim=-1, largest=False).values
            best = part if best is None else torch.cat([best, part], dim=-1).topk(k, dim=-1, largest=False).values
        return best

    def score(self, x: torch.Tensor) -> torch.Tensor:
        if self.pooling == "clip":
            d = self.distances(x)
            return d.topk(min(self.k, d.shape[1]), dim=1, largest=False).values.mean(dim=1)
        d = self.patch_distances(x).flatten(1)
        top = max(1, math.ceil(self.top_fraction * d.shape[1]))
        return d.topk(top, dim=1).values.mean(dim=1)

    def reference(self, x: torch.Tensor) -> torch.Tensor:
        """The log-mel `[B, 1, F, T]` of each clip's nearest normal training clip."""
        with torch.no_grad():
            nearest = self.distances(x).argmin(dim=1)
        return self.bank_logmel[nearest].to(x.dtype)

    def layers(self) -> dict[str, nn.Module]:
        """Patch embedding, transformer layers, final norm; 'gradcam' = the patch-embedding conv, the
        only layer whose output keeps the time-frequency layout `[B, D, F', T']`."""
        projection = self.ast.embeddings.patch_embeddings.projection
        blocks = {f"layer{i}": layer for i, layer in enumerate(self.ast.layers)}
        return {"patch_embedding": projection, **blocks, "layernorm": self.ast.layernorm, "gradcam": projection}

    def hidden_states(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Patch tokens laid out on the patch grid, `[B, D, F', T']`, after the embedding and every layer."""
        states = self.ast(input_values=self.ast_input(x), output_hidden_states=True).hidden_states
        rows, cols = self.ast.embeddings.get_shape(self.ast.config)
        names = ["patch_embedding"] + [f"layer{i}" for i in range(len(states) - 1)]
        return {n: s[:, 2:].transpose(1, 2).reshape(len(x), -1, rows, cols) for n, s in zip(names, states, strict=True)}

    # --- training -----------------------------------------------------------------------------
    def fit(self, train: torch.Tensor, val: torch.Tensor, *, train_groups: torch.Tensor,
            val_groups: torch.Tensor, seed: int, budget: Budget,
            progress: Callable[[str], None] | None = None) -> dict[str, Any]:
        device = self.tau.device
        self.input_mean, self.input_std = band_statistics(train, device)
        with torch.random.fork_rng(devices=rng_devices(device)):
            torch.manual_seed(seed)
            if self.pretrained is None:
                from transformers import ASTModel
                self.ast = ASTModel(self.ast.config).to(device)
            self.head = self._new_head().to(device)
            if self.n_groups * len(self.mel_shifts) < 2:
                info = {"epochs": 0, "best_val_loss": None, "capped_by_time": False, "train_seconds": 0.0,
                        "skipped": "a single machine/section group and no mel shifts leave the auxiliary "
                                   "classifier nothing to learn: the memory bank holds the untrained embeddings"}
                if progress:
                    progress(f"ast_knn: {info['skipped']}")
            else:
                info = self._train_classifier(train, val, train_groups, val_groups, seed, budget, progress)
        self._fill_bank(train, budget.batch_size)
        return info

    def _train_classifier(self, train: torch.Tensor, val: torch.Tensor, train_groups: torch.Tensor,
                          val_groups: torch.Tensor, seed: int, budget: Budget,
                          progress: Callable[[str], None] | None) -> dict[str, Any]:
        """Cross-entropy on the machine/section groups, early-stopped on the validation clips."""
        device = self.tau.device
        clips = torch.cat([train, val])
        groups = torch.cat([train_groups, val_groups]).long()
        if int(groups.max()) >= max(1, self.n_groups) or int(groups.min()) < 0:
            raise BenchmarkError(f"ast_knn got group labels {int(groups.min())}..{int(groups.max())} but was built "
                                 f"for n_groups={self.n_groups}: number the groups 0..n_groups-1")
        classifier = nn.ModuleDict({"ast": self.ast, "head": self.head})
        # on the device once: each step's batch is then gathered there, with no host round trip per step
        clips, groups = clips.to(device), groups.to(device)

        def loss_fn(index: torch.Tensor) -> torch.Tensor:
            x, y = clips[index], groups[index]
            views = torch.cat([shift_mels(x, s) for s in self.mel_shifts])
            labels = torch.cat([y * len(self.mel_shifts) + i for i in range(len(self.mel_shifts))])
            return F.cross_entropy(self.head(self.embed(views)), labels)

        optimizer = torch.optim.AdamW(classifier.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        # train_epochs draws batches from these index tensors; loss_fn looks the clips and groups up
        info = train_epochs(classifier, loss_fn, torch.arange(len(train)), torch.arange(len(train), len(clips)),
                            optimizer=optimizer, scheduler=None, budget=budget, seed=seed, progress=progress)
        info["val_accuracy"] = self._auxiliary_accuracy(val, val_groups, budget.batch_size)
        return info

    def _auxiliary_accuracy(self, clips: torch.Tensor, groups: torch.Tensor, batch_size: int) -> float:
        """Share of the validation clips (every mel-shift view) whose machine/section (and shift) class the
        trained head predicts: the auxiliary task's accuracy, as the frequency study plots it per cutoff."""
        device = self.tau.device
        was_training = self.training
        self.eval()
        correct = 0
        with torch.no_grad():
            for i in range(0, len(clips), batch_size):
                x, y = clips[i:i + batch_size].to(device), groups[i:i + batch_size].long().to(device)
                for j, shift in enumerate(self.mel_shifts):
                    predicted = self.head(self.embed(shift_mels(x, shift))).argmax(dim=-1)
                    correct += int((predicted == y * len(self.mel_shifts) + j).sum())
        self.train(was_training)
        return correct / max(1, len(clips) * len(self.mel_shifts))

    def _fill_bank(self, train: torch.Tensor, batch_size: int) -> None:
        device = self.tau.device
        self.eval()
        with torch.no_grad():
            pooled, tokens = [], []
            for i in range(0, len(train), batch_size):
                out = self.ast(input_values=self.ast_input(train[i:i + batch_size].to(device)))
                pooled.append(out.pooler_output)
                tokens.append(out.last_hidden_state[:, 2:].reshape(len(out.pooler_output), *self.patch_grid, -1))
            self.bank = torch.cat(pooled)
            patches = torch.cat(tokens).permute(1, 0, 2, 3).flatten(1, 2)  # [R, N*C, D]
            patches = F.normalize(patches, dim=-1) if self.metric == "cosine" else patches
            if self.coreset is not None and self.coreset < patches.shape[1]:
                keep = torch.stack([self.k_center(row, self.coreset) for row in patches])  # [R, coreset]
                patches = torch.gather(patches, 1, keep[..., None].expand(-1, -1, patches.shape[-1]))
            self.patch_bank = patches
        self.bank_logmel = train.to(device=device, dtype=torch.float16)
