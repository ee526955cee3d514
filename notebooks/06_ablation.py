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
# # 06 — Ablation (Table IV)
#
# The six versions of the paper's ablation, each trained with every seed of the profile:
# v1 per-view CNN encoders fused at the end + RedNet; v2 per-view UNets fused at the end + RedNet; v3 Tri-UNet +
# ResNet-50; v4 no face mask (RGB input, no mask loss, no part weighting); v5 no 3D landmark loss; v6 the full model.
# A paired test on the same test samples (errors averaged over seeds) says whether each version differs from v6:
# `vs_v6_mean_difference_mm` (this version minus v6, mm) and its p-values, joined to the rows by method.
#
# Runs reused: v5 and v6 of seed 0 are DF-MVR w/o L_3d and DF-MVR of Table I (notebook 04).
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
from dfmvr_lib.experiments import (Claim, RowSpec, claims_markdown, claims_table, comparison_figure,
                                   load_synthetic_test_set, mean_face_statement, ordering_statement, run_table)
from dfmvr_lib.provenance import write_table

setup = workbook.experiment_setup(profile, results_dir, data_dir)     # benchmark and parser made when missing
config, figures, tables, model = setup.config, setup.figures, setup.tables, setup.model
pixelface_root, parser_run, comparison_seeds, common = (setup.pixelface_root, setup.parser_run,
                                                        setup.comparison_seeds, setup.common)
print(setup.summary())

# %%
from dfmvr_lib.experiments import ABLATION_VERSIONS, paired_comparison

test = load_synthetic_test_set(pixelface_root, model, limit=config.experiments.test_samples)
specs = [RowSpec(method, paper_row=version) for version, method in ABLATION_VERSIONS.items()]
setting = "pixelface-like"
table_4, errors_4 = run_table("Table IV", setting, specs, dataset_root=pixelface_root, test_set=test,
                              **dict(common, seeds=config.seeds))
versions = {method: version for version, method in ABLATION_VERSIONS.items()}
table_4.insert(1, "version", [versions.get(m.split(" (oracle")[0], m.replace("_", " ")) for m in table_4["method"]])
# Each method's paired test against v6, joined to its row(s) by key (method and setting), never by position: a
# method with several rows gets its test on each; the reference rows (mean face, ceiling) get none.
full = errors_4[RowSpec("dfmvr").key]
paired = pd.DataFrame([{"method_key": spec.method, "setting": setting,
                        **{f"vs_v6_{name}": value
                           for name, value in paired_comparison(errors_4[spec.key], full).items()}}
                       for spec in specs])
table_4["method_key"] = [m.split(" (oracle")[0] for m in table_4["method"]]
table_4 = table_4.merge(paired, on=["method_key", "setting"], how="left",
                        validate="many_to_one").drop(columns=["method_key"])
write_table(table_4, tables / "06_table4_ablation.csv", config)
plots.save_figure(comparison_figure(table_4, "Table IV: ablation (pixelface-like)"), figures / "06_table4_ablation.png")
claims_4 = claims_table(errors_4, [Claim(f"v6 (full) beats {version}", "dfmvr[ABC]", RowSpec(method).key)
                                   for version, method in ABLATION_VERSIONS.items() if method != "dfmvr"])
write_table(claims_4, tables / "06_table4_claims.csv", config)
display(Markdown(mean_face_statement(table_4) + "\n\n" + claims_markdown(claims_4) + "\n\n"
                 + ordering_statement(table_4)))
table_4.drop(columns=["run_dirs"]).round(4)
