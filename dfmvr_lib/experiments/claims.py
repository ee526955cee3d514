"""Whether the paper's claims hold on this benchmark: paired tests of the orderings the paper reports, and of every
trained method against the mean face.

A claim "A is better than B" is tested on the same test triplets: per triplet, the rmse of A minus that of B
(each averaged over its seeds), the mean difference and the Wilcoxon signed-rank p-value. The verdict is
``"holds"`` when A is better with p < ``alpha``, ``"reversed"`` when B is better with p < ``alpha``, and
``"not significant"`` otherwise. Nothing here is tuned toward the paper: the claims are read off the tables as
they came out.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from ..runs import run_columns
from .methods import row_label
from .tables import paired_comparison

ALPHA = 0.01


@dataclass(frozen=True)
class Claim:
    """The paper's claim that ``better`` has a lower error than ``worse`` (keys of a :func:`run_table` errors dict,
    with the test choices to read: ``"fused"``, ``"best_view"``, ...)."""

    text: str
    better: str
    worse: str
    better_choice: str = "fused"
    worse_choice: str = "fused"


def verdict(difference_mm: float, p: float, alpha: float = ALPHA) -> str:
    """``"holds"`` / ``"reversed"`` / ``"not significant"`` for a mean difference better - worse and its p."""
    if p < alpha:
        return "holds" if difference_mm < 0 else "reversed"
    return "not significant"


def claims_table(errors: dict[str, pd.DataFrame], claims: list[Claim], alpha: float = ALPHA) -> pd.DataFrame:
    """One row per claim: ``claim``, ``difference_mm`` (better - worse, mean over paired test triplets; negative =
    the claim's direction), ``p_value`` (Wilcoxon), ``paired_samples``, ``verdict``, and the runs of both sides
    (better's, then worse's; :func:`dfmvr_lib.runs.run_columns`)."""

    rows = []
    for claim in claims:
        if claim.better not in errors or claim.worse not in errors:
            raise KeyError(f"claim {claim.text!r}: no errors for {claim.better!r} or {claim.worse!r}; have "
                           f"{sorted(errors)}")
        paired = paired_comparison(errors[claim.better], errors[claim.worse], claim.better_choice, claim.worse_choice)
        rows.append({"claim": claim.text, "difference_mm": paired["mean_difference_mm"],
                     "p_value": paired["wilcoxon_p"], "paired_samples": paired["paired_samples"],
                     "verdict": verdict(paired["mean_difference_mm"], paired["wilcoxon_p"], alpha),
                     **run_columns(list(dict.fromkeys([*errors[claim.better].attrs.get("run_dirs", ()),
                                                       *errors[claim.worse].attrs.get("run_dirs", ())])))})
    return pd.DataFrame(rows)


def claims_markdown(frame: pd.DataFrame, alpha: float = ALPHA) -> str:
    """A Markdown list of :func:`claims_table`: which of the paper's orderings hold here, with the numbers."""
    lines = [f"**The paper's orderings on this benchmark** (paired Wilcoxon tests on the test triplets, "
             f"significance level {alpha}):"]
    for row in frame.itertuples():
        lines.append(f"- {row.claim}: **{row.verdict}** (difference {row.difference_mm:+.3f} mm, "
                     f"p = {row.p_value:.2g}, {row.paired_samples} triplets)")
    return "\n".join(lines)


def mean_face_statement(table: pd.DataFrame, alpha: float = ALPHA) -> str:
    """Markdown: whether every trained-method row of ``table`` beats the mean face (columns ``vs_mean_face_mm``,
    ``p_vs_mean_face`` of :func:`dfmvr_lib.experiments.run_table`), naming the rows that do not."""
    rows = table[table["p_vs_mean_face"].notna()] if "p_vs_mean_face" in table else table.iloc[0:0]
    if rows.empty:
        return "No trained-method rows."
    beaten = (rows["vs_mean_face_mm"] < 0) & (rows["p_vs_mean_face"] < alpha)
    if beaten.all():
        worst = rows["p_vs_mean_face"].max()
        return (f"**Every trained method beats the mean face** (paired p < {alpha} on the test triplets; largest "
                f"p = {worst:.2g}).")
    failing = [f"{row['method']} [{row['test_input']}]: {row['vs_mean_face_mm']:+.3f} mm, "
               f"p = {row['p_vs_mean_face']:.2g}"
               for _, row in rows[~beaten].iterrows()]
    return (f"**{int(beaten.sum())} of {len(rows)} trained-method rows beat the mean face** (paired p < {alpha}); "
            f"not: {'; '.join(failing)}.")


def ordering_statement(table: pd.DataFrame, value: str = "rmse_mm_mean") -> str:
    """Markdown: our order of the rows with a paper number against the paper's order, Kendall's tau, and which
    pairs disagree."""
    rows = table[table["paper_rmse_mm"].notna()].copy()
    if len(rows) < 2:
        return "Fewer than two rows have a paper number: no ordering to compare."
    rows["label"] = [row_label(row) for _, row in rows.iterrows()]
    ours = list(rows.sort_values(value)["label"])
    paper = list(rows.sort_values("paper_rmse_mm")["label"])
    tau = stats.kendalltau(rows[value], rows["paper_rmse_mm"]).statistic
    disagreements = []
    records = rows.to_dict("records")
    for i in range(len(records)):
        for j in range(i + 1, len(records)):
            a, b = records[i], records[j]
            if np.sign(a[value] - b[value]) != np.sign(a["paper_rmse_mm"] - b["paper_rmse_mm"]):
                disagreements.append(f"{a['label']} vs {b['label']}")
    lines = [f"- **Ours, best to worst:** {' < '.join(ours)}",
             f"- **Paper, best to worst:** {' < '.join(paper)}",
             f"- Kendall's tau between the two orders: {tau:.2f} (1 = same order, -1 = reversed)."]
    if disagreements:
        lines.append(f"- **Pairs ordered differently from the paper:** {'; '.join(disagreements)}.")
    else:
        lines.append("- **Every pair is ordered as in the paper.**")
    return "\n".join(lines)


__all__ = ["ALPHA", "Claim", "claims_markdown", "claims_table", "mean_face_statement", "ordering_statement", "verdict"]
