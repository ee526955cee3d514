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
# # 08 — Robustness to the left view's angle (Table V) and per-region error maps (Fig. 13)
#
# The models of Table II (bosphorus-like training, no 3D landmarks) are tested on new subjects whose **left view**
# is at 10, 20, 30 or 45 degrees, or at a random angle in [10, 45]; the front and right views stay as in training.
# The test sets are generated here with their own seed (no subject overlaps the training split). Then per-region
# errors (the part classes of the ground-truth vertices) and error maps on one test face.
#
# Runs reused: all three methods are the Table II runs of notebook 04 (nothing new is trained here when notebook 04
# has run).
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
from dfmvr_lib.experiments import (Claim, RowSpec, claims_markdown, claims_table, load_synthetic_test_set,
                                   mean_face_statement, run_table)
from dfmvr_lib.provenance import write_table

setup = workbook.experiment_setup(profile, results_dir, data_dir)     # benchmark and parser made when missing
config, figures, tables, model = setup.config, setup.figures, setup.tables, setup.model
pixelface_root, parser_run, comparison_seeds, common = (setup.pixelface_root, setup.parser_run,
                                                        setup.comparison_seeds, setup.common)
print(setup.summary())

# %%
from dfmvr_lib.data.synthetic import generate_benchmark
from dfmvr_lib.data.synthetic_settings import SyntheticSettings


bosphorus_root = workbook.benchmark(config, data_dir, "bosphorus-like")
robust_rows, robust_errors, robust_roots = [], {}, {}
for yaw in config.experiments.left_yaws:
    left = dict(left_yaw_mode="uniform") if yaw == "random" else dict(left_yaw_mode="fixed", left_yaw_degrees=yaw)
    settings = SyntheticSettings.from_config(config, "bosphorus-like", seed=config.seed + 1000, train_subjects=0,
                                             validation_subjects=0, yaw_range_degrees=(10.0, 45.0), **left)
    robust_roots[yaw] = generate_benchmark(workbook.dataset_dir(data_dir, profile, f"robustness_left_{yaw}"), settings)
    test = load_synthetic_test_set(robust_roots[yaw], model, limit=config.experiments.test_samples)
    rows, robust_errors[yaw] = run_table("Table V", f"left view {yaw}",
                                         [RowSpec("shang", paper_row="none"), RowSpec("deng", paper_row="none"),
                                          RowSpec("dfmvr_no_l3d", paper_row=f"dfmvr_no_l3d@{yaw}")],
                                         dataset_root=bosphorus_root, test_set=test, **common)
    rows.insert(3, "left_yaw", str(yaw))
    robust_rows.append(rows)
table_5 = pd.concat(robust_rows, ignore_index=True)
write_table(table_5, tables / "08_table5_robustness.csv", config)
claims_5 = pd.concat([claims_table(errors, [
    Claim(f"left view {yaw}: DF-MVR w/o L_3d beats Shang et al. (best view)", "dfmvr_no_l3d[ABC]", "shang[ABC]",
          "fused", "best_view"),
    Claim(f"left view {yaw}: DF-MVR w/o L_3d beats Deng et al. (best view)", "dfmvr_no_l3d[ABC]", "deng[ABC]",
          "fused", "best_view")]) for yaw, errors in robust_errors.items()], ignore_index=True)
write_table(claims_5, tables / "08_table5_claims.csv", config)
pivot = table_5.pivot_table(index=["method", "test_input"], columns="left_yaw", values="rmse_mm_mean", sort=False)
spread = {method: float(pivot.loc[method].max(axis=1).iloc[0] - pivot.loc[method].min(axis=1).iloc[0])
          for method in ("dfmvr_no_l3d", "deng", "shang") if method in pivot.index.get_level_values(0)}
display(Markdown(mean_face_statement(table_5) + "\n\n" + claims_markdown(claims_5) + "\n\n"
                 + "- Spread of the mean rmse over the left-view yaws (max - min, first test input of each method; "
                 "the paper: DF-MVR 1.399-1.425 mm): "
                 + ", ".join(f"{m} {v:.3f} mm" for m, v in spread.items()) + "."))
pivot.round(4)

# %% [markdown]
# ### Per-region errors and error maps (Fig. 13)
# The first test face of the 30-degree set (the first set in the smoke profile), reconstructed by each method (first
# seed; the baselines from the front view B, with the parser's masks where the method uses them); each ground-truth
# point is coloured by its distance to the prediction. The table gives the rmse per face part over all test faces.

# %%
from dfmvr_lib.camera import PerspectiveCamera
from dfmvr_lib.evaluation import region_errors_table
from dfmvr_lib.experiments import (error_map_figure, evaluate_with_regions, is_single_image, predict_vertices,
                                   train_method)
from dfmvr_lib.runs import run_columns
from dfmvr_lib.training.loop import needs_parser

map_yaw = 30 if 30 in config.experiments.left_yaws else config.experiments.left_yaws[0]
test = load_synthetic_test_set(robust_roots[map_yaw], model, limit=config.experiments.test_samples)
camera = PerspectiveCamera.from_config(config)
maps, region_tables = {}, []
for method in ("shang", "deng", "dfmvr_no_l3d"):
    run = train_method(profile, method, bosphorus_root, parser_run.run_dir, config.seeds[0], common["runs_root"])
    data = test.network_data(run.config.training.input_masks, parser_run.run_dir if needs_parser(run.config) else None)
    vertices = predict_vertices(run.network, model, camera, data)
    vertices = vertices[:, 1] if is_single_image(method) else vertices[:, 0]     # baselines: the front view
    results = evaluate_with_regions(vertices, model, test)
    maps[method] = results[0]
    regions = region_errors_table(results, ids=test.sample_ids)
    regions.insert(0, "method", method)
    regions = regions.assign(**run_columns([run.run_dir]))
    region_tables.append(regions)
region_table = pd.concat(region_tables, ignore_index=True)
write_table(region_table, tables / "08_region_errors.csv", config)
plots.save_figure(error_map_figure(maps, f"error maps, left view at {map_yaw} deg (baselines: front view B)"),
                  figures / "08_error_maps.png")
region_table.groupby(["region", "method"], sort=False)["rmse_mm"].mean().unstack().round(3)
