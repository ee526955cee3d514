"""The paper's experiments (spec section 5) on the workbook's data: methods as configuration changes, training
and evaluation of a method, and the rows of the result tables (with the paper's own numbers beside ours).

- :mod:`.methods`: DF-MVR, its ablation versions and the baselines (Deng et al., Shang et al.); row labels;
- :mod:`.training_runs`: a method's keyed training runs (reused when finished), several side by side;
- :mod:`.executors`: where those runs train (worker processes, inline, SLURM / local through submitit);
- :mod:`.evaluate`: test sets with ground truth, prediction, scan-to-mesh evaluation, summary rows;
- :mod:`.tables`: one call per table row (runs for each seed, evaluate, summarise) and paired comparisons;
- :mod:`.paper_numbers`: the paper's numbers for each row;
- :mod:`.claims`: paired tests of the paper's orderings and of every method against the mean face;
- :mod:`.gap`: how much of the mean-face -> ceiling gap a run closes (notebook 03);
- :mod:`.figures`: the tables' bar charts, the sensitivity curves, per-region error maps.
"""
from .claims import Claim, claims_markdown, claims_table, mean_face_statement, ordering_statement
from .evaluate import (TestSet, evaluate_vertices, evaluate_with_regions, load_synthetic_test_set, per_sample_errors,
                       predict_vertices, summary_row)
from .figures import comparison_figure, error_map_figure, sensitivity_figure
from .gap import gap_closed, run_report
from .methods import ABLATION_VERSIONS, METHOD_LABELS, METHODS, is_single_image, method_config
from .paper_numbers import PAPER_RMSE_MM, paper_rmse
from .tables import (ALL_VIEWS, FRONT_ONLY, RowSpec, evaluate_ceiling, evaluate_mean_face, evaluate_method,
                     oracle_inputs, paired_comparison, run_table, table_rows, test_choices)
from .training_runs import train_method, train_methods

__all__ = ["ABLATION_VERSIONS", "ALL_VIEWS", "FRONT_ONLY", "METHOD_LABELS", "METHODS", "PAPER_RMSE_MM", "RowSpec",
           "TestSet", "Claim", "claims_markdown", "claims_table", "comparison_figure", "error_map_figure",
           "evaluate_ceiling", "evaluate_mean_face", "evaluate_method", "evaluate_vertices", "evaluate_with_regions",
           "gap_closed", "is_single_image", "load_synthetic_test_set", "mean_face_statement", "method_config",
           "oracle_inputs", "ordering_statement", "paired_comparison", "paper_rmse", "per_sample_errors",
           "predict_vertices", "run_report", "run_table", "sensitivity_figure", "summary_row", "table_rows",
           "test_choices", "train_method", "train_methods"]
