"""Command line: `python -m benchmark {list,run,publish,data,check}`.

Exit codes: 0 success, 1 some cells failed, 2 usage or input error (one-line reason on stderr).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from .compute import PRECISIONS
from .errors import BenchmarkError

KIND_CHOICES = ["datasets", "detectors", "explainers", "metrics"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        print(f"error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        raise SystemExit(2)


def _names(value: str) -> list[str]:
    return [v for v in value.replace(",", " ").split() if v]


def _seeds(value: str) -> list[int]:
    try:
        seeds = [int(v) for v in _names(value)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds takes integers, got {value!r}") from None
    if not seeds or min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"--seeds takes one or more non-negative integers, got {value!r}")
    return list(dict.fromkeys(seeds))


DEFAULT_OUT = Path("results/runs")
DEFAULT_LEADERBOARDS = Path("results/leaderboards")
CPU_HOURS_WITHOUT_YES = 2.0


def program_name() -> str:
    """How the user started us: the installed `audio-xai-bench` script or `python -m benchmark`."""
    return "audio-xai-bench" if Path(sys.argv[0]).name.startswith("audio-xai-bench") else "python -m benchmark"


def build_parser() -> argparse.ArgumentParser:
    prog = program_name()
    parser = _Parser(prog=prog, description="audio-xai-bench: explainers x detectors x datasets, scored by shared "
                     "faithfulness, localisation, temporal and sanity metrics",
                     epilog=f"first run: `{prog} run --suite starter` (minutes on a laptop); suites: docs/suites.md")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")

    p = sub.add_parser("list", help="registered plugins and their metadata")
    p.add_argument("kind", nargs="?", help="datasets, detectors, explainers or metrics (default: all)")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("run", help="run a suite (cached, resumable) and publish its leaderboards")
    p.add_argument("--suite", required=True, help="starter, smoke, quick, controls, full, or a path to a suite TOML "
                   "(docs/suites.md)")
    p.add_argument("--datasets", type=_names, metavar="NAMES", help="only these datasets of the suite")
    p.add_argument("--detectors", type=_names, metavar="NAMES", help="only these detectors of the suite")
    p.add_argument("--explainers", type=_names, metavar="NAMES", help="only these explainers of the suite")
    p.add_argument("--seeds", type=_seeds, help="only these seeds of the suite, e.g. 0,1")
    p.add_argument("--add-detectors", type=_names, metavar="NAMES",
                   help="also run these registered detectors, with their default parameters and budget")
    p.add_argument("--add-explainers", type=_names, metavar="NAMES",
                   help="also run these registered explainers (`list explainers`), with their defaults")
    p.add_argument("--add-metrics", type=_names, metavar="NAMES", help="also compute these registered metrics")
    p.add_argument("--device", default="auto", help="auto (CUDA when present, else CPU), cpu, cuda or cuda:N")
    p.add_argument("--executor", default="local", choices=["local", "dask"],
                   help="where cells run: this process (local) or a Dask cluster (dask; needs the [dist] extra)")
    p.add_argument("--workers", type=int, metavar="N",
                   help="--executor dask: worker processes of the local cluster (default 2)")
    p.add_argument("--threads", type=int, metavar="N",
                   help="torch threads per cell (local: this process; dask: each worker); default torch's own "
                        "(the cores). CPU tables are byte-identical across executors at the same count")
    p.add_argument("--precision", choices=PRECISIONS,
                   help="of detector training and explainer forward passes (bf16 autocasts them; scores and "
                        "metrics stay fp32); default the suite's `precision`, else fp32. Part of every cell key")
    p.add_argument("--examples-per-forward", type=int, metavar="N",
                   help="inputs one forward pass may hold (default 16 on a CPU, 512 on a GPU); explainers whose "
                        "inputs weigh more take a share of it. Bounds memory, not results")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="--executor dask: an existing cluster's scheduler (tcp://host:8786) instead of a local one")
    p.add_argument("--out", default=DEFAULT_OUT, type=Path,
                   help=f"the results store: per-cell records, checkpoints, explanations (default: {DEFAULT_OUT})")
    p.add_argument("--leaderboards", default=DEFAULT_LEADERBOARDS, type=Path,
                   help=f"where the suite's tables and page go, in a folder named after it (default: "
                        f"{DEFAULT_LEADERBOARDS}; the committed tables are `--leaderboards leaderboards`)")
    p.add_argument("--data-root", help="folder of a real dataset (dcase, woodplaner) for the suite's loaders")
    p.add_argument("--estimate", action="store_true", help="print the suite's estimated cost and exit")
    p.add_argument("--gpu-tflops", type=float, metavar="R",
                   help="sustained TFLOP/s a GPU gives the detectors, for the estimate's GPU-hours (default "
                        "20: an assumption; tools/gpu_check.sh measures yours)")
    p.add_argument("--yes", action="store_true",
                   help=f"run even when a CPU run is estimated above {CPU_HOURS_WITHOUT_YES:g} hours")
    p.add_argument("--progress", choices=["auto", "bars", "lines", "off"], default="auto",
                   help="bars on a terminal, one line per cell otherwise (auto), or as chosen")
    p.add_argument("--no-progress", action="store_true", help="same as --progress off")

    p = sub.add_parser("publish", help="rebuild a suite's leaderboards from the store")
    p.add_argument("--suite", required=True, help="the suite whose results to publish (name or TOML path)")
    p.add_argument("--out", default=DEFAULT_OUT, type=Path,
                   help=f"the results store of its run (default: {DEFAULT_OUT})")
    p.add_argument("--leaderboards", default=DEFAULT_LEADERBOARDS, type=Path,
                   help=f"where the tables go (default: {DEFAULT_LEADERBOARDS})")

    p = sub.add_parser("data", help="write a synthetic dataset to disk, or check one on disk")
    dsub = p.add_subparsers(dest="data_command", required=True, parser_class=_Parser, metavar="ACTION")
    q = dsub.add_parser("synth", help="write a synthetic dataset in the DCASE or planer layout, and/or the "
                        "splits a run loads")
    q.add_argument("name", help="synthetic-machines or synthetic-planer")
    q.add_argument("--out", type=Path, help="folder to write the clips and their truth to (must not hold another "
                   "dataset)")
    q.add_argument("--store", type=Path, help="results store (the --out of later runs) to write the stacked train "
                   "and test splits to, which runs with the same dataset parameters load instead of rendering")
    q.add_argument("--seed", type=int, default=0, help="the generator's seed (default 0)")
    q.add_argument("--layout", choices=["dcase", "planer"], help="folder layout of --out (default: the dataset's "
                   "own)")
    q.add_argument("--size", default=None, help="size table of the recipe (tiny, smoke, quick, full; default quick)")
    q = dsub.add_parser("check", help="validate a dataset on disk and print its counts")
    q.add_argument("--dataset", required=True, help="dcase or woodplaner")
    q.add_argument("--data-root", required=True, help="the dataset's folder")

    p = sub.add_parser("explain", help="explain one clip: score and verdict, PNG (map, time curve), WAV if listenable")
    p.add_argument("wav", type=Path, help="the clip to explain")
    p.add_argument("--detector", required=True, help="the detector's registered name (e.g. ae, dense_ae)")
    p.add_argument("--explainer", required=True, help="the explainer's registered name (e.g. integrated_gradients)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", type=Path, help="a trained detector checkpoint (<out>/checkpoints/KEY.pt)")
    src.add_argument("--suite-run", type=Path, help="a run directory (--out of a suite run) holding the detector")
    p.add_argument("--dataset", help="which dataset's detector to take from --suite-run, when several")
    p.add_argument("--out", required=True, type=Path, help="folder for the figures and sound")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")

    p = sub.add_parser("check", help="conformance checks of registered plugins")
    p.add_argument("kind", nargs="?", help="dataset, detector, explainer or metric (default: every detector x "
                   "explainer pair), or a plugin's name")
    p.add_argument("name", nargs="?", help="one plugin (default: all of the kind)")
    p.add_argument("--detector", help="train only this detector (explainers and metrics are checked on it)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--data-root", help="check dataset: the folder a dataset on disk (dcase, woodplaner) reads")
    return parser


def cmd_list(args: argparse.Namespace) -> int:
    from .plugin_index import listing as plugin_listing
    from .registry import KINDS, registry
    kinds = [registry(args.kind).kind] if args.kind else list(KINDS)
    known = plugin_listing()
    listing = {k: known[k] for k in kinds}
    if args.json:
        print(json.dumps(listing, indent=1))
        return 0
    for kind, plugins in listing.items():
        print(f"{kind}s ({len(plugins)}):")
        for p in plugins:
            meta = {k: v for k, v in p.items() if k not in ("name", "summary")}
            shown = "  ".join(f"{k}={_short(v)}" for k, v in meta.items())
            print(f"  {p['name']:<26} {p['summary']}")
            if shown:
                print(f"  {'':<26} {shown}")
    return 0


def _short(v) -> str:
    if isinstance(v, (list, tuple, set, frozenset)):
        return ",".join(map(str, v))
    if isinstance(v, dict):
        return ",".join(f"{k}:{x}" for k, x in v.items())
    return str(v)


def cmd_run(args: argparse.Namespace) -> int:
    from contextlib import ExitStack

    from . import replay
    from .integrity import store_lock
    from .suites import suite_path

    t0 = time.monotonic()
    suite_file = suite_path(args.suite)
    name = _suite_name(suite_file)
    with ExitStack() as held:
        locked = Path(args.out).is_dir() and not args.estimate  # a new store waits for validation
        if locked:
            held.enter_context(store_lock(args.out))
            replayed = replay.try_replay(args, name, suite_file)
            if replayed is not None:
                print(f"{name}: every cell cached and nothing changed since the last complete run; "
                      f"leaderboards copied to {replayed} in {time.monotonic() - t0:.1f} s")
                return 0
        from .compute import check_bound
        from .executors import make_executor
        from .workspace import resolve_device

        suite = _validated_suite(args)
        device = resolve_device(args.device)
        weights = _announce(args, suite, device)
        if weights is None:
            return 0
        if args.threads is not None:
            if args.threads < 1:
                raise BenchmarkError(f"--threads {args.threads}: use a positive number of torch threads")
            import torch
            torch.set_num_threads(args.threads)
        check_bound(args.examples_per_forward)
        executor = make_executor(args.executor, workers=args.workers, scheduler=args.scheduler,
                                 threads=args.threads, gpu=device.type == "cuda")
        held.callback(executor.close)
        if not locked:
            held.enter_context(store_lock(args.out))
        return _run_locked(args, suite, device, executor, t0, weights)


def _announce(args: argparse.Namespace, suite, device) -> dict[str, float] | None:
    """Print what the run will cost and where it runs; None when it must not start (`--estimate`, or a long CPU
    run without `--yes`). Returns each cell's estimated seconds for the ETA."""
    from .estimate import DEFAULT_GPU_TFLOPS, estimate_suite
    from .store import DONE, SKIPPED, Store

    if args.gpu_tflops is not None and not args.gpu_tflops > 0:
        raise BenchmarkError(f"--gpu-tflops {args.gpu_tflops}: give the GPU's sustained rate in TFLOP/s (> 0)")
    est = estimate_suite(suite, gpu_tflops=args.gpu_tflops or DEFAULT_GPU_TFLOPS)
    todo = est.seconds
    if Path(args.out).is_dir():  # cells already in the store cost nothing
        store = Store(args.out)
        todo = {k: v for k, v in est.seconds.items()
                if (store.status(k) or {}).get("status") not in (DONE, SKIPPED)}
    hours = sum(todo.values()) / 3600
    cells = f"{len(est.seconds)} cells, {len(est.seconds) - len(todo)} already in {args.out}"
    print(f"{suite.name}: {cells}; {est.summary(str(device))}"
          + (f"; left to compute: {hours:.2f} CPU-hours" if len(todo) < len(est.seconds) else ""),
          file=sys.stderr, flush=True)
    if args.estimate:
        print(f"{suite.name}: estimated {est.total_s / 3600:.2f} CPU-hours (2 cores) for {len(est.seconds)} cells")
        return None
    if device.type == "cpu" and hours > CPU_HOURS_WITHOUT_YES and not args.yes:
        raise BenchmarkError(f"suite {suite.name!r} is estimated at {hours:.1f} CPU-hours on this CPU: pass --yes to "
                             f"run it anyway, run it on a GPU (--device cuda), or start with --suite starter or quick")
    return est.seconds


def _validated_suite(args: argparse.Namespace):
    """The suite as narrowed and extended by the CLI options, checked whole (plugins, parameters, budgets,
    dataset sizes) before anything is written."""
    from dataclasses import replace

    from .suites import check_datasets, extend, load_suite, narrow

    suite = narrow(load_suite(args.suite), datasets=args.datasets, detectors=args.detectors,
                   explainers=args.explainers, seeds=args.seeds)
    suite = extend(suite, detectors=args.add_detectors, explainers=args.add_explainers, metrics=args.add_metrics)
    _check_explained_seeds(suite, args)
    if args.precision:
        suite = replace(suite, precision=args.precision)
    if args.data_root:
        suite = _with_data_root(suite, args.data_root)
    check_datasets(suite)
    return suite


def _check_explained_seeds(suite, args: argparse.Namespace) -> None:
    """`--seeds` that leave out every seed of the suite's `[evaluate] seeds` train and score detectors only: an
    error where explainers were asked for, a notice otherwise (the run then publishes no explanation rows)."""
    if not suite.explainers or any(suite.explained(s) for s in suite.seeds):
        return
    seeds = ",".join(map(str, suite.seeds))
    explained = ", ".join(map(str, suite.explain_seeds))
    where = f"suite {suite.name!r} explains the detectors of seed(s) {explained} only ([evaluate] seeds)"
    if args.explainers or args.add_explainers:
        raise BenchmarkError(f"--seeds {seeds}: {where}, so no explainer would run; add one of {explained} to "
                             f"--seeds")
    print(f"note: --seeds {seeds} trains and scores detectors only: {where}", file=sys.stderr)


def _progress_mode(args: argparse.Namespace) -> str:
    from .progress import default_mode
    if args.no_progress:
        return "off"
    return default_mode(False) if args.progress == "auto" else args.progress


def _run_locked(args: argparse.Namespace, suite, device, executor, t0: float, weights: dict[str, float]) -> int:
    from . import replay
    from .leaderboard import publish
    from .runner import run_suite
    from .store import Store

    summary = run_suite(suite, out=args.out, device=device, executor=executor, progress=_progress_mode(args),
                        weights=weights, forward_bound=args.examples_per_forward)
    folder = publish(Store(args.out), suite.name, args.leaderboards, _progress_mode(args))
    print(f"{suite.name}: {summary.done} cells computed, {summary.cached} cached, {len(summary.skipped)} skipped, "
          f"{len(summary.failed)} failed in {time.monotonic() - t0:.1f} s on {device}; leaderboards in {folder}")
    for line in summary.skipped:
        print(f"  skipped  {line}")
    for line in summary.failed:
        print(f"  FAILED   {line}")
    if summary.exit_code == 0:
        replay.remember(args, suite.name, suite.path, folder)
    return summary.exit_code


def suite_name_of(suite: str) -> str:
    """The `name` of a suite given by name or path (read without loading any plugin)."""
    from .suites import suite_path
    return _suite_name(suite_path(suite))


def _suite_name(suite_file: Path) -> str:
    """The suite's `name` (its file stem by default), read without loading any plugin, checked to be a name
    that can be a folder of `--leaderboards`."""
    import tomllib

    from .integrity import check_name
    try:
        name = tomllib.loads(suite_file.read_text()).get("name", suite_file.stem)
    except tomllib.TOMLDecodeError:
        name = suite_file.stem
    return check_name(name, f"suite '{suite_file}': name")


def _with_data_root(suite, data_root: str):
    from dataclasses import replace

    datasets = []
    for ds in suite.datasets:
        params = dict(ds.params)
        if "data_root" in _factory_params(ds):
            params["data_root"] = data_root
        datasets.append(replace(ds, params=params))
    return replace(suite, datasets=tuple(datasets))


def _factory_params(config) -> list[str]:
    import inspect
    return list(inspect.signature(config.plugin.factory).parameters)


def cmd_publish(args: argparse.Namespace) -> int:
    from .integrity import store_lock
    from .leaderboard import publish
    from .store import Store
    try:  # the name only: publishing reads what the run recorded, not the suite file's current content
        name = suite_name_of(args.suite)
    except BenchmarkError:
        # a suite file gone since its run still publishes, by the name the store recorded it under
        if not _recorded_suite(args.out, args.suite):
            raise
        name = args.suite
    if not Path(args.out).is_dir():
        raise BenchmarkError(f"no results store at '{args.out}': run `python -m benchmark run --suite {name} "
                             f"--out {args.out}` first, or pass the --out folder of a run")
    with store_lock(args.out):
        folder = publish(Store(args.out), name, args.leaderboards)
    print(f"published {name} to {folder}")
    return 0


def _recorded_suite(out: Path, name: str) -> bool:
    """Whether the store at `out` holds a run recorded under the suite name `name`."""
    from .integrity import NAME_PATTERN
    from .store import Store
    return Path(out).is_dir() and bool(NAME_PATTERN.fullmatch(name)) and Store(out).suite_manifest(name) is not None


def cmd_data(args: argparse.Namespace) -> int:
    from . import data_commands
    if args.data_command == "synth":
        params = {"size": args.size} if args.size else {}
        print(data_commands.synth(args.name, args.out, seed=args.seed, layout=args.layout, store=args.store,
                                  **params))
    else:
        print(data_commands.check(args.dataset, args.data_root))
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from .explain_one import explain
    from .workspace import resolve_device
    result = explain(args.wav, detector=args.detector, explainer=args.explainer, checkpoint=args.checkpoint,
                     suite_run=args.suite_run, dataset=args.dataset, out=args.out,
                     device=resolve_device(args.device))
    print(f"{args.wav}: {args.detector} / {args.explainer}")
    print(result.summary())
    for path in result.files:
        print(path)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from .conformance import check
    from .workspace import resolve_device
    ok, report = check(args.kind, args.name, device=str(resolve_device(args.device)), detector=args.detector,
                       data_root=args.data_root)
    print(report)
    return 0 if ok else 1


COMMANDS = {"list": cmd_list, "run": cmd_run, "publish": cmd_publish, "data": cmd_data, "explain": cmd_explain,
            "check": cmd_check}


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except BenchmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished cells are kept; run the same command again to resume", file=sys.stderr)
        return 130
