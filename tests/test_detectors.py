"""The detectors `ae`, `mae`, `ast_knn`, `dense_ae`: shapes, parameters, training, checkpoints, gradients."""
from __future__ import annotations

import json
import math

import pytest
import torch
from sklearn.metrics import roc_auc_score
from transformers import ASTConfig, ASTModel

from adapters.detectors._skip_cae import SkipCAEDetector, SkipCAETransformer, attention_heads, patch_mask
from benchmark.detector import Budget, batched_scores
from benchmark.errors import BenchmarkError
from benchmark.registry import detectors

BUILTIN = [p.name for p in detectors.plugins() if p.factory.__module__.startswith("adapters.")]  # no test-* ones
SKIP_CAE = [n for n in BUILTIN if issubclass(detectors.get(n).factory, SkipCAEDetector)]
SMALL = (32, 64)
TINY_BUDGET = Budget(epochs=1, patience=1, batch_size=8)


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def smooth_logmels(n: int, grid: tuple[int, int], seed: int) -> torch.Tensor:
    """Normal clips: smooth random log-mels in dB with a falling spectrum, `[n, 1, F, T]`."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(n, 1, grid[0] // 4, grid[1] // 4, generator=g)
    x = torch.nn.functional.interpolate(coarse, size=grid, mode="bilinear", align_corners=False) * 3.0 - 30.0
    return x + torch.linspace(6.0, -6.0, grid[0]).view(1, 1, -1, 1)


def two_machines(n: int, grid: tuple[int, int], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Clips of two 'machines' told apart by a tonal band low or high in the spectrum."""
    x, groups = smooth_logmels(n, grid, seed), torch.arange(n) % 2
    x[groups == 0, :, 4:8] += 10.0
    x[groups == 1, :, -8:-4] += 10.0
    return x, groups


def fitted(name: str, grid: tuple[int, int] = SMALL, *, n_train: int = 8, n_groups: int = 2, seed: int = 0,
           budget: Budget = TINY_BUDGET, **params):
    torch.manual_seed(123)
    det = detectors.make(name, **params)
    det.build(grid, n_groups)
    train, val = smooth_logmels(n_train, grid, seed=1), smooth_logmels(2, grid, seed=2)
    det.remember_normals(train)
    det.fit(train, val, train_groups=torch.arange(n_train) % n_groups, val_groups=torch.arange(2) % n_groups,
            seed=seed, budget=budget)
    return det.eval()


def reloaded(name: str, det, grid: tuple[int, int] = SMALL, n_groups: int = 2, **params):
    """A fresh detector built for the grid, loaded from `det`'s checkpoint."""
    torch.manual_seed(999)  # different initial weights: everything must come from the checkpoint
    twin = detectors.make(name, **params)
    twin.build(grid, n_groups)
    twin.load_state_dict(det.state_dict())
    return twin.eval()


# --- the Skip-CAE-Transformer -------------------------------------------------------------------
def test_parameter_count_on_planer_grid_matches_reference():
    net = SkipCAETransformer((80, 401))
    total = sum(p.numel() for p in net.parameters())
    transformers = sum(p.numel() for m in (net.encoder_transformer, net.decoder_transformer) for p in m.parameters())
    assert net.tokens_grid == (10, 50) and net.encoder_transformer.self_attn.num_heads == 10
    assert abs(total - 7.1e6) / 7.1e6 < 0.03  # REFERENCE A: about 7.1 M
    assert transformers / total > 0.97  # "nearly all in the two transformer layers"


@pytest.mark.parametrize("grid,tokens,heads", [((80, 401), (10, 50), 10), ((128, 313), (16, 39), 12),
                                               ((128, 126), (16, 15), 10)])
def test_token_width_and_heads_follow_the_grid(grid, tokens, heads):
    net = SkipCAETransformer(grid)
    assert net.tokens_grid == tokens
    assert net.encoder_transformer.self_attn.num_heads == heads == net.decoder_transformer.self_attn.num_heads
    assert net.encoder_transformer.self_attn.embed_dim == tokens[0] * tokens[1]


def test_attention_heads_divide_the_width():
    assert [attention_heads(w) for w in (500, 624, 240, 7, 8)] == [10, 12, 10, 7, 8]


def test_too_small_grid_is_refused():
    with pytest.raises(BenchmarkError, match="at least 8 mel bands"):
        SkipCAETransformer((6, 64))


@pytest.mark.parametrize("name,grid", [("ae", (80, 401)), ("mae", (80, 401)), ("ae", (128, 313)),
                                       ("mae", (128, 313)), ("ae", (128, 126))])
def test_skip_cae_shapes_layers_and_gradients(name, grid):
    """Both presets and 4-s clips: output on the full grid, stage shapes, gradient on every input bin."""
    det = detectors.make(name)
    det.build(grid, 1)
    det.eval()
    x = torch.randn(2, 1, *grid, requires_grad=True)
    outputs = {}
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: outputs.setdefault(n, o))
             for n, m in det.layers().items() if n != "gradcam"]
    x_hat = det.reconstruct(x)
    for h in hooks:
        h.remove()
    s = ((x_hat - x) ** 2).mean(dim=(1, 2, 3))
    assert x_hat.shape == x.shape and s.shape == (2,)
    with torch.no_grad():  # without autograd PyTorch's fused transformer path may differ in the last bits
        assert torch.allclose(det.score(x), s, rtol=1e-5) and torch.allclose(det.reference(x), x_hat, atol=1e-5)
    s.sum().backward()
    assert torch.isfinite(x.grad).all() and (x.grad != 0).float().mean() > 0.99
    f8, t8 = grid[0] // 8, grid[1] // 8
    assert list(det.layers())[:5] == ["h1", "h2", "h3", "h4", "h5"]
    assert det.layers()["gradcam"] is det.layers()["h13"]
    assert outputs["h5"].shape == (2, 4, grid[0] // 2, grid[1] // 8 * 4)
    assert outputs["h13"].shape == (2, 32, f8, t8)
    assert outputs["last"].shape == (2, 32, f8 * t8)
    with torch.no_grad():
        hidden = det.hidden_states(x)
    assert hidden["h11"].shape == (2, 16, f8, t8) and hidden["z"].shape == (2, 32, math.ceil(f8 / 2), math.ceil(t8 / 2))


# --- MAE masking --------------------------------------------------------------------------------
def test_patch_mask_exact_ratio_and_alignment():
    g = torch.Generator().manual_seed(0)
    mask = patch_mask(16, (80, 400), 0.3, 4, generator=g)
    assert mask.shape == (16, 1, 80, 400)
    patches = mask.view(16, 20, 4, 100, 4)
    # every aligned 4x4 square is all masked or all kept
    assert torch.equal(patches.amax(dim=(2, 4)), patches.amin(dim=(2, 4)))
    per_clip = patches[:, :, 0, :, 0].sum(dim=(1, 2))
    assert per_clip.tolist() == [600.0] * 16  # exactly 30 % of 20 x 100 patches, every clip
    assert mask.sum(dim=(1, 2, 3)).tolist() == [0.3 * 80 * 400] * 16
    assert not torch.equal(mask[0], mask[1])  # drawn per clip
    again = patch_mask(16, (80, 400), 0.3, 4, generator=g)
    assert not torch.equal(mask, again)  # and per access


def test_patch_mask_partial_edge_patches_and_large_patches():
    mask = patch_mask(3, (80, 401), 0.5, 16, generator=torch.Generator().manual_seed(1))
    assert mask.shape == (3, 1, 80, 401)
    # 5 x 26 patches (the last column 1 frame wide); exactly 65 of 130 chosen
    corners = mask[:, 0, ::16, ::16]
    assert corners.shape == (3, 5, 26) and corners.sum(dim=(1, 2)).tolist() == [65.0] * 3
    squares = corners.repeat_interleave(16, 1).repeat_interleave(16, 2)[:, :80, :401]
    assert torch.equal(mask[:, 0], squares)


def test_mae_parameters_are_checked_and_used():
    with pytest.raises(BenchmarkError, match="mask_ratio"):
        detectors.make("mae", mask_ratio=1.0)
    det = detectors.make("mae", mask_ratio=0.9, patch=16)
    assert (det.mask_ratio, det.patch) == (0.9, 16)


def test_mae_loss_counts_masked_bins_only():
    det = detectors.make("mae")
    det.build(SMALL, 1)
    det.eval()  # no dropout: the two forwards below must see the same network
    x = smooth_logmels(2, SMALL, seed=0)
    torch.manual_seed(5)
    mask = patch_mask(2, SMALL, 0.3, 4)
    torch.manual_seed(5)
    loss = det.training_loss(x)
    x_hat = det.unstandardise(det.net(det.standardise(x) * (1 - mask)))
    expected = ((x_hat - x) ** 2)[mask.bool()].mean()
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)


# --- every detector -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", BUILTIN)
def test_state_dict_round_trip_gives_identical_scores(name):
    det = fitted(name)
    x = smooth_logmels(3, SMALL, seed=7)
    twin = reloaded(name, det)
    with torch.no_grad():
        assert torch.equal(det.score(x), twin.score(x))
        assert torch.equal(det.reference(x), twin.reference(x))


# the Skip-CAE ones: test_skip_cae_shapes_layers_and_gradients
@pytest.mark.parametrize("name", [n for n in BUILTIN if n not in SKIP_CAE])
@pytest.mark.parametrize("grid", [(128, 313), (80, 401)])
def test_shapes_on_both_presets(name, grid):
    small_ast = {"hidden_size": 32, "num_layers": 1, "num_heads": 2} if name == "ast_knn" else {}
    det = fitted(name, grid, n_train=4, **small_ast)
    x = smooth_logmels(2, grid, seed=3).requires_grad_()
    s = det.score(x)
    assert s.shape == (2,) and torch.isfinite(s).all()
    assert det.reference(x).shape == x.shape
    s.sum().backward()
    assert x.grad.shape == x.shape and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", BUILTIN)
def test_planted_band_is_detected(name):
    """Two epochs on smooth normal log-mels of two machines; clips with a bright band score higher."""
    torch.manual_seed(0)
    det = detectors.make(name)
    det.build(SMALL, 2)
    train, groups = two_machines(48, SMALL, seed=1)
    val, val_groups = two_machines(8, SMALL, seed=2)
    det.remember_normals(train)
    det.fit(train, val, train_groups=groups, val_groups=val_groups, seed=0,
            budget=Budget(epochs=2, patience=2, batch_size=16))
    det.eval()
    normal, anomalous = two_machines(8, SMALL, seed=11)[0], two_machines(8, SMALL, seed=11)[0]
    anomalous[:, :, 12:16, :] += 15.0
    scores = batched_scores(det, torch.cat([normal, anomalous]), 16, torch.device("cpu"))
    assert roc_auc_score([0] * 8 + [1] * 8, scores.numpy()) >= 0.95


def test_fit_is_seeded_and_leaves_the_callers_random_state_alone():
    torch.manual_seed(0)
    before = torch.get_rng_state()
    a = fitted("mae", seed=3)
    b = fitted("mae", seed=3)
    c = fitted("mae", seed=4)
    x = smooth_logmels(2, SMALL, seed=5)
    with torch.no_grad():
        assert torch.equal(a.score(x), b.score(x)) and not torch.equal(a.score(x), c.score(x))
    torch.manual_seed(0)
    assert torch.equal(torch.get_rng_state(), before)


@pytest.mark.parametrize("name", SKIP_CAE)
def test_training_steps_lower_the_loss(name):
    det = detectors.make(name)
    det.build(SMALL, 1)
    x = smooth_logmels(8, SMALL, seed=0)
    det.input_mean, det.input_std = x.mean(dim=(0, 1, 3), keepdim=True), x.std(dim=(0, 1, 3), keepdim=True)
    optimizer = torch.optim.AdamW(det.net.parameters(), lr=1e-3, weight_decay=0.01)
    det.train()

    def loss() -> torch.Tensor:
        torch.manual_seed(0)  # the same masks and dropout before and after
        return det.training_loss(x)

    losses = []
    for _ in range(3):
        optimizer.zero_grad()
        step = loss()
        step.backward()
        optimizer.step()
        losses.append(float(step))
    losses.append(float(loss()))
    assert losses == sorted(losses, reverse=True) and losses[-1] < losses[0]


# --- AST + kNN ----------------------------------------------------------------------------------
def test_ast_classifier_training_lowers_cross_entropy():
    det = detectors.make("ast_knn", hidden_size=32, num_layers=1, num_heads=2, mel_shifts=[0])
    det.build(SMALL, 2)
    train, groups = two_machines(32, SMALL, seed=0)
    val, val_groups = two_machines(8, SMALL, seed=1)
    info = det.fit(train, val, train_groups=groups, val_groups=val_groups, seed=0,
                   budget=Budget(epochs=4, patience=4, batch_size=8))
    assert info["epochs"] == 4 and info["best_val_loss"] < 0.5 * math.log(2)
    assert det.bank.shape == (32, 32) and det.bank_logmel.shape == (32, 1, *SMALL)
    assert det.bank_logmel.dtype == torch.float16


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_ast_knn_gradient_reaches_the_input(metric):
    det = fitted("ast_knn", metric=metric)
    train = smooth_logmels(8, SMALL, seed=1)
    x = torch.cat([smooth_logmels(2, SMALL, seed=9), train[:1]]).requires_grad_()  # the last is a bank clip
    s = det.score(x)
    assert float(s[-1]) == pytest.approx(0.0, abs=1e-3)
    s.sum().backward()
    assert torch.isfinite(x.grad).all()
    assert (x.grad[:2].abs().sum(dim=(1, 2, 3)) > 0).all()


def test_ast_knn_reference_is_the_nearest_training_clip_and_k_averages():
    det = fitted("ast_knn", metric="euclidean", pooling="clip")
    train = smooth_logmels(8, SMALL, seed=1)
    with torch.no_grad():
        assert torch.equal(det.reference(train[[5, 2]]), train[[5, 2]].half().float())
        x = smooth_logmels(2, SMALL, seed=9)
        d = det.distances(x)
    det.k = 3
    with torch.no_grad():
        assert torch.allclose(det.score(x), d.sort(dim=1).values[:, :3].mean(dim=1))


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_ast_knn_patch_score_against_a_loop_over_tokens(metric):
    det = fitted("ast_knn", metric=metric, k=2, top_fraction=0.25)
    train = smooth_logmels(8, SMALL, seed=1)
    x = smooth_logmels(3, SMALL, seed=9)
    with torch.no_grad():
        bank, tokens = det.patch_tokens(train), det.patch_tokens(x)  # [N, R, C, D], [B, R, C, D]
        got = det.score(x)
    rows, cols = det.patch_grid
    want = []
    for b in range(len(x)):
        per_token = []
        for r in range(rows):
            normal = bank[:, r].reshape(-1, bank.shape[-1]).double()
            for c in range(cols):
                t = tokens[b, r, c].double()
                d = (1 - torch.nn.functional.cosine_similarity(normal, t[None], dim=1)) if metric == "cosine" \
                    else (normal - t).norm(dim=1)
                per_token.append(float(d.sort().values[:2].mean()))
        top = sorted(per_token, reverse=True)[: math.ceil(0.25 * rows * cols)]
        want.append(sum(top) / len(top))
    assert got.tolist() == pytest.approx(want, rel=1e-4, abs=1e-5)
    with torch.no_grad():  # a training clip sits in the bank: each of its tokens is at distance 0 with k = 1
        det.k = 1
        assert det.score(train[:2]).abs().max() < 1e-3


def test_ast_mel_shift_classes():
    from adapters.detectors.ast_knn import shift_mels
    x = torch.arange(5.0).reshape(1, 1, 5, 1).expand(1, 1, 5, 3)
    assert shift_mels(x, 2)[0, 0, :, 0].tolist() == [0, 0, 0, 1, 2]
    assert shift_mels(x, -1)[0, 0, :, 0].tolist() == [1, 2, 3, 4, 4]
    assert shift_mels(x, 0) is x
    det = detectors.make("ast_knn", hidden_size=32, num_layers=1, num_heads=2, mel_shifts=[0, -2, 2])
    det.build(SMALL, 1)
    assert det.head[-1].out_features == 3  # one group x three shifts: a single machine still trains
    train = smooth_logmels(8, SMALL, seed=1)
    info = det.fit(train[:6], train[6:], train_groups=torch.zeros(6, dtype=torch.long),
                   val_groups=torch.zeros(2, dtype=torch.long), seed=0, budget=TINY_BUDGET)
    assert info["epochs"] >= 1
    for bad in ([1, 2], [0, 0], []):
        with pytest.raises(BenchmarkError, match="mel_shifts"):
            detectors.make("ast_knn", mel_shifts=bad)
    with pytest.raises(BenchmarkError, match="pooling"):
        detectors.make("ast_knn", pooling="max")
    with pytest.raises(BenchmarkError, match="top_fraction"):
        detectors.make("ast_knn", top_fraction=0.0)


def test_ast_knn_single_group_keeps_the_initial_embeddings():
    det = detectors.make("ast_knn", hidden_size=32, num_layers=1, num_heads=2, mel_shifts=[0])
    det.build(SMALL, 1)
    train = smooth_logmels(6, SMALL, seed=1)
    messages = []
    info = det.fit(train, train[:2], train_groups=torch.zeros(6, dtype=torch.long),
                   val_groups=torch.zeros(2, dtype=torch.long), seed=0, budget=TINY_BUDGET, progress=messages.append)
    assert info["epochs"] == 0 and "single machine/section group" in messages[0]
    with torch.no_grad():
        assert torch.equal(det.bank, det.embed(train))


def test_ast_knn_rejects_unknown_metric_and_missing_checkpoint(tmp_path):
    with pytest.raises(BenchmarkError, match="metric"):
        detectors.make("ast_knn", metric="manhattan")
    det = detectors.make("ast_knn", pretrained=str(tmp_path))
    with pytest.raises(BenchmarkError, match="config.json"):
        det.build(SMALL, 2)


def save_small_ast(folder, preprocessor: dict | None = None) -> ASTModel:
    torch.manual_seed(0)
    model = ASTModel(ASTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                               num_mel_bins=48, max_length=96, patch_size=16, frequency_stride=16,
                               time_stride=16)).eval()
    model.save_pretrained(folder)
    if preprocessor is not None:
        (folder / "preprocessor_config.json").write_text(json.dumps(preprocessor))
    return model


def test_ast_knn_local_pretrained_checkpoint(tmp_path):
    model = save_small_ast(tmp_path, {"mean": -2.0, "std": 3.0, "do_normalize": True})
    det = fitted("ast_knn", pretrained=str(tmp_path))
    # embeddings = the saved model on the clip resized to its 48 x 96 grid, fbank-normalised: z / 2
    x = smooth_logmels(2, SMALL, seed=4)
    z = (x - det.input_mean) / det.input_std
    resized = torch.nn.functional.interpolate(z, size=(48, 96), mode="bilinear", align_corners=False)
    with torch.no_grad():
        assert torch.allclose(det.ast_input(x), resized[:, 0].transpose(1, 2) / 2, atol=1e-6)
    # fine-tuning starts from the checkpoint: one epoch at lr 1e-5 moves the weights only slightly
    w0, w1 = model.embeddings.patch_embeddings.projection.weight, det.ast.embeddings.patch_embeddings.projection.weight
    assert 0 < float((w0 - w1).abs().max()) < 1e-3
    # two detectors from the same checkpoint and seed agree exactly; so does the reloaded checkpoint
    again = fitted("ast_knn", pretrained=str(tmp_path))
    twin = reloaded("ast_knn", det, pretrained=str(tmp_path))
    with torch.no_grad():
        assert torch.equal(det.score(x), again.score(x)) and torch.equal(det.score(x), twin.score(x))


def test_ast_knn_pretrained_without_normalisation_reads_fbanks(tmp_path):
    save_small_ast(tmp_path, {"mean": -2.0, "std": 3.0, "do_normalize": False})
    det = detectors.make("ast_knn", pretrained=str(tmp_path))
    det.build(SMALL, 2)
    x = torch.zeros(1, 1, *SMALL)  # at the band means: the checkpoint's mean fbank
    assert torch.allclose(det.ast_input(x), torch.full((1, 96, 48), -2.0))


def test_ast_knn_layers_and_hidden_states_keep_the_patch_grid():
    det = detectors.make("ast_knn", hidden_size=32, num_layers=2, num_heads=2)
    det.build((40, 70), 2)  # padded to 48 x 80: 3 x 5 patches of 16 x 16
    x = torch.randn(2, 1, 40, 70)
    assert det.ast_input(x).shape == (2, 80, 48)
    caught = []
    hook = det.layers()["gradcam"].register_forward_hook(lambda m, i, o: caught.append(o))
    states = det.hidden_states(x)
    hook.remove()
    assert list(det.layers()) == ["patch_embedding", "layer0", "layer1", "layernorm", "gradcam"]
    assert caught[0].shape == (2, 32, 3, 5)
    assert list(states) == ["patch_embedding", "layer0", "layer1"]
    assert all(s.shape == (2, 32, 3, 5) for s in states.values())
    assert torch.allclose(states["patch_embedding"], caught[0] + det.ast.embeddings.position_embeddings[:, 2:]
                          .transpose(1, 2).reshape(1, 32, 3, 5), atol=1e-6)


def test_early_stopping_keeps_the_best_weights_and_counts_patience():
    from benchmark.detector import EarlyStopping
    model = torch.nn.Linear(1, 1, bias=False)
    stopping = EarlyStopping(model, Budget(epochs=10, patience=2))
    stopping.best = 1.0  # the untrained model's loss: an epoch has to beat it
    with torch.no_grad():
        model.weight.fill_(3.0)
    assert not stopping.should_stop(1.5)  # worse than the start: nothing kept
    assert stopping.best_state is None and stopping.stale == 1
    assert not stopping.should_stop(0.5)
    with torch.no_grad():
        model.weight.fill_(7.0)
    assert not stopping.should_stop(0.6)
    assert stopping.should_stop(0.7) and not stopping.capped  # two epochs without improvement
    model.train()
    stopping.restore_best()
    assert model.weight.item() == 3.0 and stopping.best == 0.5 and not model.training


def test_early_stopping_needs_a_relative_gain_to_reset_patience():
    """A creeping validation loss (0.1 % per epoch) keeps its best weights but stops on the plateau rule;
    patience 0 never stops on a plateau."""
    from benchmark.detector import EarlyStopping
    model = torch.nn.Linear(1, 1, bias=False)
    stopping = EarlyStopping(model, Budget(epochs=50, patience=3, min_improvement=0.005))
    losses = [1.0, 0.9] + [0.9 * 0.999 ** k for k in range(1, 10)]
    stopped_at = next(i for i, v in enumerate(losses) if stopping.should_stop(v))
    assert stopped_at == 4 and stopping.reason == "plateau"  # epochs 3..5 gain 0.1 % each: 3 stale
    assert stopping.best == losses[4]  # the small gains still moved the best weights
    strict = EarlyStopping(model, Budget(epochs=50, patience=3, min_improvement=0.0))
    assert not any(strict.should_stop(v) for v in losses) and strict.reason == "epochs"
    never = EarlyStopping(model, Budget(epochs=50, patience=0))
    assert not any(never.should_stop(v) for v in [1.0, 1.0, 1.0, 1.0])


def test_ast_knn_chunked_bank_search_is_exact_and_keeps_gradients():
    det = fitted("ast_knn", k=3, top_fraction=0.25)
    x = smooth_logmels(3, SMALL, seed=9).requires_grad_(True)
    whole = det.score(x)
    (grad_whole,) = torch.autograd.grad(whole.sum(), x)
    det.bank_chunk = 5  # the bank holds 8 clips x C tokens per row: many chunks, some shorter than k
    assert det.patch_bank.shape[1] > 3 * det.bank_chunk
    chunked = det.score(x)
    (grad_chunked,) = torch.autograd.grad(chunked.sum(), x)
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad_chunked, grad_whole, rtol=1e-4, atol=1e-6)
    with pytest.raises(BenchmarkError, match="bank_chunk"):
        detectors.make("ast_knn", bank_chunk=0)
    with pytest.raises(BenchmarkError, match="coreset"):
        detectors.make("ast_knn", coreset=0)


def test_ast_knn_coreset_is_a_greedy_k_center_of_each_row():
    def exact_cdist(a, b):
        return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")

    full = fitted("ast_knn", metric="euclidean")
    small = fitted("ast_knn", metric="euclidean", coreset=6)
    rows, n = full.patch_bank.shape[:2]
    assert small.patch_bank.shape == (rows, 6, full.patch_bank.shape[-1])
    for r in range(rows):  # every kept token is a bank token, and greedy k-center covers no worse than a
        bank, kept = full.patch_bank[r], small.patch_bank[r]  # seeded random subset of the same size
        assert exact_cdist(kept, bank).min(dim=1).values.max() < 1e-5
        radius = exact_cdist(bank, kept).min(dim=1).values.max()
        g = torch.Generator().manual_seed(r)
        random = bank[torch.randperm(n, generator=g)[:6]]
        assert radius <= exact_cdist(bank, random).min(dim=1).values.max() + 1e-6
    chosen = full.k_center(full.patch_bank[0], 6)
    assert len(set(chosen.tolist())) == 6 and torch.equal(chosen, full.k_center(full.patch_bank[0], 6))
    x = smooth_logmels(3, SMALL, seed=9)
    with torch.no_grad():  # a smaller bank can only be farther: every clip's score rises or stays
        assert torch.all(small.score(x) >= full.score(x) - 1e-5)


def test_calibration_on_one_validation_clip_gives_a_finite_temperature():
    """A tiny dataset holds out one normal clip: no spread at all, so the temperature takes its floor (it was
    NaN, and every calibrated probability with it)."""
    det = detectors.make("dense_ae")
    det.calibrate(torch.tensor([0.7]))
    assert float(det.temperature) == pytest.approx(1e-6) and float(det.tau) == pytest.approx(0.7)
    det.calibrate(torch.tensor([1.0, 1.0, 1.0, 3.0]))  # IQR 0.5
    assert float(det.temperature) == pytest.approx(0.5)
