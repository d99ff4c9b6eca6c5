"""AST+kNN detection AUC with a k-center coreset patch bank against the exact bank, on a finished run's trained
ast_knn detectors (the same network; only the bank differs, both rebuilt from the stored training log-mel):

    python tools/coreset_check.py RUNS SUITE [FRACTION ...]     (default fractions 0.25 0.1 0.05)

Prints per dataset the mean per-section AUC (as `detectors.csv` computes it) and each section's AUC."""
import sys

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from benchmark.cells import expand
from benchmark.store import Store
from benchmark.suites import load_suite
from benchmark.workspace import Workspace


def section_aucs(det, x: torch.Tensor, y: np.ndarray, sections: np.ndarray) -> list[float]:
    with torch.no_grad():
        scores = torch.cat([det.score(x[i:i + 16]) for i in range(0, len(x), 16)]).numpy()
    return [roc_auc_score(y[sections == s], scores[sections == s]) for s in sorted(set(sections))]


def main(runs: str, suite: str, fractions: list[float]) -> None:
    ws = Workspace(Store(runs), torch.device("cpu"))
    trains, _ = expand(load_suite(suite))
    for cell in trains:
        if cell.detector.name != "ast_knn" or not ws.store.checkpoint_path(cell.key).is_file():
            continue
        det = ws.detector(cell.key, cell.detector)
        test = ws.table(cell.dataset, "test")
        known = test.labels >= 0
        x, y = test.x[known], test.labels[known].numpy()
        sections = np.array([f"{m.get('machine', '')}/{m.get('section', '')}"
                             for m, k in zip(test.meta, known.tolist(), strict=True) if k])
        train, full = det.bank_logmel.float(), det.patch_bank.shape[1]
        for fraction in [None, *fractions]:
            det.coreset = None if fraction is None else max(1, int(full * fraction))
            det._fill_bank(train, 16)
            per = section_aucs(det, x, y, sections)
            kept = "exact bank" if fraction is None else f"coreset {det.coreset}/{full} tokens per row"
            print(f"{cell.dataset.label} seed {cell.seed}, {kept}: mean section AUC {np.mean(per):.4f} "
                  f"{[round(v, 3) for v in per]} (n {len(y)}, {int(y.sum())} anomalous)", flush=True)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], [float(f) for f in sys.argv[3:]] or [0.25, 0.1, 0.05])
