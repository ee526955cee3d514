# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
#     formats: ipynb,py:percent
#     notebook_metadata_filter: kernelspec,jupytext,-jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (dfmvr-workbench)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 07 — Sensitivity to the loss weights (Fig. 11)
#
# The paper sweeps the photo-loss weight w_p with the other weights fixed (best around 4-5), then the mask-loss
# weight w_m at the best w_p (best around 3). Same here, with the first seed of the profile; each point is the mean
# rmse over the test samples (error bars: standard error of that mean). The best weight is read off the
# **validation** split's vertex error (the run's last validation pass), not the test split; the test rmse is shown.
#
# Runs reused: the point at the profile's own weights (w_p = 4, w_m = 3) is DF-MVR of Table I (notebook 04).
#
# Every table has two reference rows: the **mean face** (what every network predicts before training) and the
# **ceiling** (the least-squares fit of the model to each ground-truth mesh, an oracle: no regressor of these
# coefficients can do better). Every row of a trained method carries `vs_mean_face_mm` (mean paired difference,
# negative = better) and `p_vs_mean_face` (paired Wilcoxon p-value on the same test triplets), and `run_dirs`, the run
# directories it was evaluated from.

# %% tags=["parameters"]
profile = "cpu"          # smoke | cpu | paper
results_dir = "../results"
data_dir = "../data"         # generated datasets and training runs (git-ignored)

# %%
import pandas as pd
from IPython.display import Markdown, display

from dfmvr_lib import plots, workbook
from dfmvr_lib.experiments import (RowSpec, load_synthetic_test_set, mean_face_statement, run_table)
from dfmvr_lib.provenance import write_table

setup = workbook.experiment_setup(profile, results_dir, data_dir)     # benchmark and parser made when missing
config, figures, tables, model = setup.config, setup.figures, setup.tables, setup.model
pixelface_root, parser_run, comparison_seeds, common = (setup.pixelface_root, setup.parser_run,
                                                        setup.comparison_seeds, setup.common)
print(setup.summary())

# %%
from pathlib import Path

from dfmvr_lib.experiments import sensitivity_figure

test = load_synthetic_test_set(pixelface_root, model, limit=config.experiments.test_samples)
photo_weights, mask_weights = config.experiments.photo_weights, config.experiments.mask_weights
sweep = dict(common, seeds=config.seeds[:1])


def validation_error(row) -> float:
    """The run's last validation vertex error (mm): the selection criterion of the sweep."""
    return float(pd.read_csv(Path(row["run_dirs"].split()[0]) / "validation.csv")["network_mm"].iloc[-1])


photo_rows, _ = run_table("Fig. 11", "pixelface-like",
                          [RowSpec("dfmvr", paper_row="none", overrides={"losses.photo": w}) for w in photo_weights],
                          dataset_root=pixelface_root, test_set=test, reference_rows=False, **sweep)
photo_rows["weight"], photo_rows["value"] = "photo", photo_weights
photo_rows["validation_mm"] = [validation_error(row) for _, row in photo_rows.iterrows()]
best_photo = float(photo_rows.loc[photo_rows["validation_mm"].idxmin(), "value"])
mask_rows, _ = run_table("Fig. 11", "pixelface-like",
                         [RowSpec("dfmvr", paper_row="none", overrides={"losses.photo": best_photo, "losses.mask": w})
                          for w in mask_weights], dataset_root=pixelface_root, test_set=test, **sweep)
references = mask_rows[mask_rows["method"].isin(["mean_face", "ceiling"])]
mask_rows = mask_rows[~mask_rows["method"].isin(["mean_face", "ceiling"])].copy()
mask_rows["weight"], mask_rows["value"] = "mask", mask_weights
mask_rows["validation_mm"] = [validation_error(row) for _, row in mask_rows.iterrows()]
best_mask = float(mask_rows.loc[mask_rows["validation_mm"].idxmin(), "value"])
sweeps = pd.concat([photo_rows, mask_rows, references], ignore_index=True)
sweeps["rmse_mm_sem"] = sweeps["rmse_mm_std"] / sweeps["n_test"] ** 0.5
write_table(sweeps, tables / "07_sensitivity.csv", config)
plots.save_figure(sensitivity_figure(sweeps[sweeps["weight"].notna()]), figures / "07_sensitivity.png")
paper_best = {"photo": (4.0, 5.0), "mask": (3.0,)}
lines = [mean_face_statement(sweeps)]
for name, best in (("photo", best_photo), ("mask", best_mask)):
    holds = "agrees with" if best in paper_best[name] else "differs from"
    lines.append(f"- best w_{name[0]} on the validation split: **{best:g}**; this {holds} the paper's best "
                 f"({' - '.join(f'{v:g}' for v in paper_best[name])}).")
display(Markdown("\n".join(lines)))
sweeps[["weight", "value", "validation_mm", "rmse_mm_mean", "rmse_mm_sem", "vs_mean_face_mm", "p_vs_mean_face",
        "n_test", "seeds", "method"]].round(4)
