"""Experiment bookkeeping: methods as config changes, per-sample error choices, table rows, paired tests, the
ordering statement. (The notebooks 04-08 run end to end in tests/test_notebooks.py.)"""
import pandas as pd
import pytest
import torch

from dfmvr_lib.config import get_config
from dfmvr_lib.experiments import (METHODS, is_single_image, method_config, ordering_statement, paired_comparison,
                                   paper_rmse, per_sample_errors, summary_row)
from dfmvr_lib.experiments.tables import RowSpec, table_rows


def _errors(rmse_by_view: dict[str, list[float]], seed: int = 0) -> pd.DataFrame:
    rows = []
    for view, values in rmse_by_view.items():
        for sample, value in enumerate(values):
            rows.append({"seed": seed, "sample": f"s{sample}", "subject": f"p{sample}", "reconstruction": view,
                         "rmse_mm": value, "mean_mm": value / 2})
    return pd.DataFrame(rows)


def test_methods_are_config_changes_that_build():
    from dfmvr_lib.networks import DFMVRNet, SingleImageNet, build_network

    assert method_config("smoke", "dfmvr") == get_config("smoke")
    assert method_config("smoke", "dfmvr_no_l3d").losses.use_landmark_3d is False
    assert method_config("smoke", "v4_no_mask").network.mask_encoding == "none"
    assert method_config("smoke", "dfmvr", seed=1).seed == 1
    for name in METHODS:
        network = build_network(method_config("smoke", name))
        assert isinstance(network, SingleImageNet if is_single_image(name) else DFMVRNet), name
    with pytest.raises(ValueError, match="unknown method"):
        method_config("smoke", "nope")


def test_per_sample_error_choices():
    errors = _errors({"A": [3.0, 1.0], "B": [2.0, 2.0], "C": [1.0, 3.0]})
    best = per_sample_errors(errors, "best_view")
    assert best["rmse_mm"].tolist() == [1.0, 1.0]
    mean = per_sample_errors(errors, "mean_over_views")
    assert mean["rmse_mm"].tolist() == [2.0, 2.0] and mean["mean_mm"].tolist() == [1.0, 1.0]
    assert per_sample_errors(errors, "B")["rmse_mm"].tolist() == [2.0, 2.0]
    with pytest.raises(ValueError):
        per_sample_errors(errors, "worst")


def test_table_rows_pool_seeds_and_label_the_paper_number():
    errors = pd.concat([_errors({"fused": [1.0, 2.0]}, seed=0), _errors({"fused": [3.0, 4.0]}, seed=1)])
    [row] = table_rows(errors, table="Table I", method="dfmvr", setting="x", profile="smoke")
    assert row["rmse_mm_mean"] == pytest.approx(2.5)
    assert row["rmse_mm_std"] == pytest.approx(pd.Series([1.0, 2.0, 3.0, 4.0]).std())
    assert row["rmse_mm_seed_spread"] == pytest.approx(1.0)
    assert row["n_test"] == 2 and row["seeds"] == "0 1"
    assert (row["paper_rmse_mm"], row["paper_std_mm"]) == paper_rmse("Table I", "dfmvr") == (1.4402, 0.2959)
    baseline = _errors({"A": [1.0], "B": [2.0], "C": [3.0]})
    rows = table_rows(baseline, table="Table I", method="deng", setting="x", profile="smoke")
    assert [r["test_input"] for r in rows] == ["best_view", "mean_over_views"]
    assert rows[0]["paper_rmse_mm"] == 1.6641 and rows[1]["paper_rmse_mm"] is None


def test_paired_comparison_detects_a_consistent_difference():
    generator = torch.Generator().manual_seed(0)
    base = (torch.rand(30, generator=generator) + 1.0).tolist()
    reference = _errors({"fused": base})
    worse = _errors({"fused": [b + 0.2 + 0.01 * i for i, b in enumerate(base)]})
    result = paired_comparison(worse, reference)
    assert result["mean_difference_mm"] == pytest.approx(0.2 + 0.01 * 14.5)
    assert result["wilcoxon_p"] < 1e-3 and result["t_test_p"] < 1e-3 and result["paired_samples"] == 30
    same = paired_comparison(reference, reference)
    assert same["wilcoxon_p"] == 1.0 and same["mean_difference_mm"] == 0.0


def test_ordering_statement_names_disagreeing_pairs():
    table = pd.DataFrame([
        {"method": "shang", "test_input": "best_view", "rmse_mm_mean": 2.0, "paper_rmse_mm": 1.8877},
        {"method": "deng", "test_input": "best_view", "rmse_mm_mean": 1.5, "paper_rmse_mm": 1.6641},
        {"method": "dfmvr", "test_input": "fused", "rmse_mm_mean": 1.6, "paper_rmse_mm": 1.4402},
    ])
    text = ordering_statement(table)
    assert "Kendall" in text
    assert ("**Pairs ordered differently from the paper:** Deng et al. (Deep3DFace) [best view] vs DF-MVR (ours)."
            in text)
    agreeing = table.assign(rmse_mm_mean=[3.0, 2.0, 1.0])
    assert "Every pair is ordered as in the paper" in ordering_statement(agreeing)


def test_row_spec_keys_distinguish_inputs_and_overrides():
    assert RowSpec("dfmvr").key != RowSpec("dfmvr", input_views=(False, True, False)).key
    assert RowSpec("dfmvr").key != RowSpec("dfmvr", overrides={"losses.photo": 2.0}).key


def test_summary_row_shapes():
    config = get_config("smoke")
    frame = pd.DataFrame({"sample": ["a", "b"], "subject": ["p", "q"], "rmse_mm": [1.0, 3.0], "mean_mm": [0.5, 1.5]})
    row = summary_row([frame], table="Table IV", method="v1_cnn", setting="x", test_choice="fused", config=config,
                      seeds=[0])
    assert row["rmse_mm_mean"] == 2.0 and row["mean_mm_mean"] == 1.0 and row["n_test"] == 2
    assert row["paper_rmse_mm"] == 1.5415 and row["paper_std_mm"] is None and row["profile"] == "smoke"


def test_table_rows_with_chosen_views_label_the_rows_and_drop_the_paper_number():
    baseline = _errors({"A": [1.0, 5.0], "B": [2.0, 4.0], "C": [3.0, 3.0]})
    [row] = table_rows(baseline, table="Table III", method="deng", setting="x", profile="smoke",
                       choices={"B": "front view B alone"})
    assert row["test_input"] == "front view B alone"
    assert row["rmse_mm_mean"] == pytest.approx(3.0) and row["paper_rmse_mm"] is None


def test_readme_block_is_generated_from_the_csvs(tmp_path):
    from dfmvr_lib.readme_tables import BLOCK_END, BLOCK_START, update_readme

    tables = tmp_path / "tables"
    tables.mkdir()
    rows = table_rows(_errors({"fused": [1.25, 1.75]}), table="Table I", method="dfmvr", setting="pixelface-like",
                      profile="smoke")
    frame = pd.DataFrame(rows).assign(git_commit="abc1234", date="2026-01-01T00:00:00Z")
    frame.to_csv(tables / "04_table1_pixelface.csv", index=False)
    pd.DataFrame({"profile": ["cpu"] * 2, "notebook": ["00_a.ipynb", "01_b.ipynb"], "seconds": [60.0, 120.0],
                  "host": "x86_64 2 cpu"}).to_csv(tables / "run_notebooks_timing.csv", index=False)
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\nbefore\n\n{BLOCK_START}\nold text\n{BLOCK_END}\n\nafter\n")
    assert update_readme(readme, tables) is True
    text = readme.read_text()
    assert "old text" not in text and text.startswith("# title\n\nbefore") and text.endswith("after\n")
    assert "| DF-MVR (ours) | pixelface-like | fused | 2 | 0 | 1.500 +- 0.354 |" in text
    assert "vs mean face (mm, p)" in text
    assert "1.440 +- 0.296" in text                         # the paper's Table I number, its own column
    assert "**3 minutes** for 2 notebooks" in text and "commit abc1234" in text
    assert "Not run yet:" in text and "06_table4_ablation.csv" in text
    assert update_readme(readme, tables) is False          # idempotent
    readme.write_text("no markers")
    with pytest.raises(ValueError, match="README.md: no headline-results block"):
        update_readme(readme, tables)


def test_experiment_schedule_overrides_the_training_length_only_when_set():
    cpu = get_config("cpu")
    assert cpu.experiments.training_steps is not None and cpu.experiments.training_steps != cpu.training.steps
    assert method_config("cpu", "deng").training.steps == cpu.experiments.training_steps
    assert method_config("cpu", "dfmvr", overrides={"training.steps": 7}).training.steps == 7
    assert get_config("smoke").experiments.training_steps is None
    assert method_config("smoke", "dfmvr").training.steps == get_config("smoke").training.steps


def test_claims_say_holds_reversed_or_not_significant():
    from dfmvr_lib.experiments import Claim, claims_markdown, claims_table

    generator = torch.Generator().manual_seed(1)
    base = (torch.rand(40, generator=generator) + 1.0).tolist()
    noise = (0.05 * torch.randn(40, generator=generator)).tolist()
    errors = {"good": _errors({"fused": [b - 0.3 for b in base]}), "ref": _errors({"fused": base}),
              "same": _errors({"fused": [b + n for b, n in zip(base, noise)]}),
              "baseline": _errors({"A": [b + 0.5 for b in base], "B": base, "C": [b + 0.4 for b in base]})}
    frame = claims_table(errors, [Claim("good beats ref", "good", "ref"), Claim("ref beats good", "ref", "good"),
                                  Claim("same beats ref", "same", "ref"),
                                  Claim("good beats the baseline's best view", "good", "baseline", "fused",
                                        "best_view")])
    assert frame["verdict"].tolist() == ["holds", "reversed", "not significant", "holds"]
    assert frame["difference_mm"].iloc[0] == pytest.approx(-0.3)
    assert "**holds**" in claims_markdown(frame) and "40 triplets" in claims_markdown(frame)
    with pytest.raises(KeyError, match="missing"):
        claims_table(errors, [Claim("x", "missing", "ref")])


def test_mean_face_statement_names_the_rows_that_do_not_beat_it():
    from dfmvr_lib.experiments import mean_face_statement

    table = pd.DataFrame([{"method": "dfmvr", "test_input": "fused", "vs_mean_face_mm": -0.2, "p_vs_mean_face": 1e-5},
                          {"method": "deng", "test_input": "best_view", "vs_mean_face_mm": 0.1, "p_vs_mean_face": 0.2},
                          {"method": "mean_face", "test_input": "fused", "vs_mean_face_mm": None,
                           "p_vs_mean_face": None}])
    statement = mean_face_statement(table)
    assert "1 of 2 trained-method rows" in statement and "deng [best_view]" in statement
    assert "Every trained method beats the mean face" in mean_face_statement(table.iloc[[0, 2]])


def test_oracle_inputs_are_named_in_the_method_label():
    from dfmvr_lib.experiments import oracle_inputs
    from dfmvr_lib.experiments.methods import method_label

    assert oracle_inputs(get_config("cpu")) == ""
    oracle = get_config("cpu", {"training.input_masks": "ground_truth", "training.landmark_noise_nme": 0.0})
    assert oracle_inputs(oracle) == "ground-truth masks, exact 2D landmarks"
    assert method_label("dfmvr (oracle: ground-truth masks)") == "DF-MVR (ours) (oracle: ground-truth masks)"
    assert method_label("ceiling").startswith("ceiling (oracle")


def test_gap_closed_is_zero_at_the_mean_face_and_one_at_the_ceiling():
    from dfmvr_lib.experiments import gap_closed

    assert gap_closed(3.0, 3.0, 1.0) == 0.0 and gap_closed(1.0, 3.0, 1.0) == 1.0
    assert gap_closed(2.2, 3.0, 1.0) == pytest.approx(0.4) and gap_closed(3.5, 3.0, 1.0) < 0
    with pytest.raises(ValueError, match="ceiling"):
        gap_closed(2.0, 1.0, 1.5)


def test_learning_figure_draws_every_variant_with_its_own_style():
    import pandas as pd

    from dfmvr_lib.training.figures import learning_figure

    names = [f"variant {i}" for i in range(14)]
    curves = pd.DataFrame([{"variant": name, "minutes": m, "network_mm": 3.4 - 0.01 * m, "gap_closed": 0.01 * m,
                            "mean_face_mm": 3.4, "ceiling_mm": 0.4} for name in names for m in (1.0, 2.0)])
    figure = learning_figure(curves, highlight="variant 0")
    left, right = figure.axes[:2]
    drawn = [line for line in left.get_lines() if line.get_label() in names]
    assert [line.get_label() for line in drawn] == names
    assert len([line for line in right.get_lines() if line.get_label() in names]) == 14
    styles = {(line.get_color() if isinstance(line.get_color(), str) else tuple(line.get_color()), line.get_linestyle())
              for line in drawn}
    assert len(styles) == 14                                    # no two variants share colour and dash
    assert drawn[0].get_color() == "black"
    heights = sorted(line.get_ydata()[0] for line in left.get_lines() if line.get_label() not in names)
    assert heights == [0.4, 3.4]                                # the ceiling and the mean face as lines
