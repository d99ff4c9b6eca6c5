"""Learning curves on the page: every detector's and interpreter's validation curve, once per training run."""
from __future__ import annotations

import numpy as np
from PIL import Image

from benchmark.training_curves import curve_figures, training_curves


def _records() -> list[dict]:
    train = {"cell": "train", "status": "done", "dataset": "d", "detector": "ae", "seed": 0,
             "log": {"val_curve": [4.0, 2.0, 1.5], "stop_reason": "plateau"}}
    failed = {"cell": "train", "status": "failed", "dataset": "d", "detector": "mae", "seed": 0,
              "log": {"val_curve": [9.0]}}
    lmac = {"cell": "evaluate", "status": "done", "dataset": "d", "detector": "ae", "explainer": "lmac",
            "seed": 0, "interpreter_key": "k1",
            "fit_log": {"history": [{"loss": 3.0, "val_loss": 2.5}, {"loss": 2.0, "val_loss": 2.25}],
                        "stop_reason": "epochs"}}
    codec = {"cell": "evaluate", "status": "done", "dataset": "d", "detector": "mae", "explainer": "encodec_latent",
             "seed": 0, "interpreter_key": "k2", "fit_log": {"val_curve": [7.0, 6.0], "stop_reason": "time"}}
    untrained = {"cell": "evaluate", "status": "done", "dataset": "d", "detector": "ae", "explainer": "saliency",
                 "seed": 0}
    # a second evaluate cell that loaded the same L-MAC interpreter: the curve appears once
    return [train, failed, lmac, dict(lmac, detector="ae"), codec, untrained]


def test_one_row_per_run_and_epoch_with_its_stop_reason():
    table = training_curves(_records())
    runs = table.groupby(["kind", "detector", "explainer"]).size().to_dict()
    assert runs == {("detector", "ae", ""): 3, ("interpreter", "ae", "lmac"): 2,
                    ("interpreter", "mae", "encodec_latent"): 2}
    lmac = table[table["explainer"] == "lmac"]
    assert lmac["val_loss"].tolist() == [2.5, 2.25] and lmac["epoch"].tolist() == [1, 2]
    assert set(lmac["stop_reason"]) == {"epochs"} and set(lmac["epochs"]) == {2}
    assert table[table["kind"] == "detector"]["stop_reason"].unique().tolist() == ["plateau"]


def test_no_training_gives_an_empty_table_with_the_columns():
    table = training_curves([{"cell": "evaluate", "status": "done", "explainer": "saliency"}])
    assert table.empty and "val_loss" in table.columns


def test_one_figure_per_dataset(tmp_path):
    records = _records() + [dict(_records()[0], dataset="e")]
    paths = curve_figures(training_curves(records), tmp_path)
    assert [p.name for p in paths] == ["training-d.png", "training-e.png"]
    image = np.asarray(Image.open(paths[0]).convert("L"))
    assert image.shape[1] > image.shape[0] and image.std() > 0  # two panels side by side, something drawn
