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
# # 05 — Single-view reconstruction (Table III)
#
# DF-MVR trained in single-view mode: with probability 1/3 the input triple keeps one view (A, B or C, equally often)
# and the other two are black images with empty masks; the losses use only the views the network saw. At test time
# the network gets **one real view** (the front view B; the others black). We also show the same network with all
# three views (the paper's "ours" row of Table III), the normally trained DF-MVR given the front view alone, and the
# baselines on the front view alone and as the best of three.
#
# Runs reused: Deng, Shang and DF-MVR are the Table I runs of notebook 04 (trained here only when notebook 04 has not
# run); the single-view run is the one run of this notebook.
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
from dfmvr_lib.experiments import (FRONT_ONLY, Claim, RowSpec, claims_markdown, claims_table, comparison_figure,
                                   load_synthetic_test_set, mean_face_statement, ordering_statement, run_table)
from dfmvr_lib.provenance import write_table

setup = workbook.experiment_setup(profile, results_dir, data_dir)     # benchmark and parser made when missing
config, figures, tables, model = setup.config, setup.figures, setup.tables, setup.model
pixelface_root, parser_run, comparison_seeds, common = (setup.pixelface_root, setup.parser_run,
                                                        setup.comparison_seeds, setup.common)
print(setup.summary())

# %%
from dfmvr_lib.experiments import table_rows

test = load_synthetic_test_set(pixelface_root, model, limit=config.experiments.test_samples)
specs = [RowSpec("shang", paper_row="shang"), RowSpec("deng", paper_row="deng"),
         RowSpec("dfmvr_single_view", input_views=FRONT_ONLY),
         RowSpec("dfmvr_single_view", paper_row="dfmvr"),
         RowSpec("dfmvr", paper_row="none", input_views=FRONT_ONLY)]
table_3, errors_3 = run_table("Table III", "pixelface-like", specs, dataset_root=pixelface_root, test_set=test,
                              **common)
front_rows = [row for method in ("shang", "deng")     # the baselines on the front view alone (no oracle)
              for row in table_rows(errors_3[RowSpec(method).key], table="Table III", method=method,
                                    setting="pixelface-like", profile=profile,
                                    choices={"B": "front view B alone"})]
table_3 = pd.concat([table_3, pd.DataFrame(front_rows)], ignore_index=True)
write_table(table_3, tables / "05_table3_single_view.csv", config)
plots.save_figure(comparison_figure(table_3, "Table III: single-view input (pixelface-like)"),
                  figures / "05_table3_single_view.png")
claims_3 = claims_table(errors_3, [
    Claim("DF-MVR single-view (front view alone) beats Deng et al. (front view alone)", "dfmvr_single_view[B]",
          "deng[ABC]", "fused", "B"),
    Claim("DF-MVR single-view (front view alone) beats Shang et al. (front view alone)", "dfmvr_single_view[B]",
          "shang[ABC]", "fused", "B"),
    Claim("DF-MVR single-view: three views beat the front view alone", "dfmvr_single_view[ABC]",
          "dfmvr_single_view[B]"),
    Claim("single-view training helps a one-view test (front view alone)", "dfmvr_single_view[B]", "dfmvr[B]"),
])
write_table(claims_3, tables / "05_table3_claims.csv", config)
display(Markdown(mean_face_statement(table_3) + "\n\n" + claims_markdown(claims_3) + "\n\n"
                 + ordering_statement(table_3)))
table_3.drop(columns=["run_dirs"]).round(4)
