"""The paper's experiments (spec section 5) on the workbook's data: methods as configuration changes, training
and evaluation of a method, and the rows of the result tables (with the paper's own numbers beside ours).

- :mod:`.methods`: DF-MVR, its ablation versions and the baselines (Deng et al., Shang et al.);
- :mod:`.runner`: test sets with ground truth, prediction, scan-to-mesh evaluation, table rows;
- :mod:`.tables`: one call per table row (train for each seed, evaluate, summarise) and paired comparisons;
- :mod:`.paper_numbers`: the paper's numbers for each row;
- :mod:`.claims`: paired tests of the paper's orderings and of every method against the mean face;
- :mod:`.gap`: how much of the mean-face -> ceiling gap a run closes (notebook 03).
"""
from .methods import ABLATION_VERSIONS, METHOD_LABELS, METHODS, is_single_image, method_config
from .paper_numbers import PAPER_RMSE_MM, paper_rmse
from .runner import (TestSet, evaluate_vertices, evaluate_with_regions, load_synthetic_test_set, per_sample_errors, predict_vertices,
                     summary_row)
from .report import comparison_figure, error_map_figure, ordering_statement, sensitivity_figure
from .tables import (ALL_VIEWS, FRONT_ONLY, RowSpec, evaluate_ceiling, evaluate_mean_face, evaluate_method,
                     oracle_inputs, paired_comparison, run_table, table_rows, test_choices, train_method, train_methods)
from .claims import Claim, claims_markdown, claims_table, mean_face_statement
from .gap import gap_closed, run_report

__all__ = ["ABLATION_VERSIONS", "ALL_VIEWS", "FRONT_ONLY", "METHOD_LABELS", "METHODS", "PAPER_RMSE_MM", "RowSpec", "TestSet",
           "evaluate_mean_face", "evaluate_method", "evaluate_vertices", "evaluate_with_regions", "is_single_image", "load_synthetic_test_set", "method_config",
           "paired_comparison", "paper_rmse", "per_sample_errors", "predict_vertices", "summary_row", "table_rows",
           "test_choices", "train_method", "train_methods", "comparison_figure", "error_map_figure", "ordering_statement",
           "run_table", "sensitivity_figure", "Claim", "claims_markdown", "claims_table", "mean_face_statement",
           "evaluate_ceiling", "oracle_inputs", "gap_closed", "run_report"]
