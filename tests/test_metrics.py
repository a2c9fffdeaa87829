"""Evaluation metrics against hand-computed values (pure numpy, no model)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from rewardlab.evaluation.metrics import (
    NO_SUBSET,
    calibration,
    kendall_tau,
    length_bias,
    preference_accuracy,
    ranking_metrics,
    score_statistics,
    spearman_rho,
    subset_accuracy,
    top1_accuracy,
)

LN3 = math.log(3.0)  # σ(ln 3) = 3/4
LN19 = math.log(19.0)  # σ(ln 19) = 19/20
LN13_7 = math.log(13.0 / 7.0)  # σ(ln 13/7) = 13/20


def _plain(value) -> bool:
    """True if ``value`` is built only from Python scalars, None, lists and str-keyed dicts (no numpy types)."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    return value is None or type(value) in (int, float, str, bool)


# --- pairs -----------------------------------------------------------------------------------------------------------


def test_preference_accuracy_counts_a_tie_as_half():
    # margins [2, 1, 0, 1, -2]: 3 wins, 1 tie, 1 loss -> (3 + 0.5) / 5
    out = preference_accuracy([3, 2, 5, 1, 0], [1, 1, 5, 0, 2])
    assert set(out) == {"accuracy", "ties", "margin_mean", "margin_std", "n"}
    assert out["accuracy"] == pytest.approx(0.7, abs=1e-12)
    assert out["ties"] == 1 and out["n"] == 5
    assert out["margin_mean"] == pytest.approx(0.4, abs=1e-12)
    # deviations [1.6, 0.6, -0.4, 0.6, -2.4]: squares sum to 9.2, population variance 9.2 / 5
    assert out["margin_std"] == pytest.approx(math.sqrt(1.84), abs=1e-12)


def test_score_statistics_is_population():
    assert score_statistics(np.array([1.0, 3.0])) == {"mean": 2.0, "std": 1.0, "n": 2}


def test_subset_accuracy_weights_by_count():
    chosen = [2, 2, 0, 1, 3]
    rejected = [1, 1, 1, 1, 0]
    out = subset_accuracy(chosen, rejected, ["a", "a", "a", "b", None])
    assert list(out["subsets"]) == ["a", "b", NO_SUBSET]  # first-appearance order, None -> "(none)"
    assert out["subsets"]["a"]["accuracy"] == pytest.approx(2 / 3, abs=1e-12) and out["subsets"]["a"]["n"] == 3
    assert out["subsets"]["b"]["accuracy"] == 0.5 and out["subsets"]["b"]["ties"] == 1
    assert out["subsets"][NO_SUBSET]["accuracy"] == 1.0
    # (3 * 2/3 + 1 * 0.5 + 1 * 1) / 5 = 0.7, the pooled accuracy; macro = (2/3 + 1/2 + 1) / 3 = 13/18
    assert out["weighted_accuracy"] == pytest.approx(0.7, abs=1e-12)
    assert out["weighted_accuracy"] == pytest.approx(preference_accuracy(chosen, rejected)["accuracy"], abs=1e-12)
    assert out["macro_accuracy"] == pytest.approx(13 / 18, abs=1e-12)
    assert out["n"] == 5
    assert _plain(out)


def test_subset_accuracy_empty():
    out = subset_accuracy([], [], [])
    assert out["subsets"] == {} and out["n"] == 0 and math.isnan(out["weighted_accuracy"])


# --- ranked groups ---------------------------------------------------------------------------------------------------


def test_kendall_tau_sign_convention_and_one_swap():
    ranks = [1, 2, 3, 4]
    assert kendall_tau([4, 3, 2, 1], ranks) == 1.0  # highest score has rank 1: perfect agreement
    assert kendall_tau([1, 2, 3, 4], ranks) == -1.0
    # scores [4, 2, 3, 1] swap ranks 2 and 3: 5 concordant, 1 discordant of 6 pairs, no ties -> 4/6
    assert kendall_tau([4, 2, 3, 1], ranks) == pytest.approx(2 / 3, abs=1e-12)
    assert kendall_tau(np.exp([4, 2, 3, 1]), ranks) == pytest.approx(2 / 3, abs=1e-12)  # rank-based


def test_kendall_tau_b_with_ties_on_both_sides():
    # goodness = -rank = [-1, -1, -2, -3]; pairs (0,1): rank tie; (0,2), (0,3): score lower but better -> discordant;
    # (1,2), (1,3), (2,3): score ties. n_c - n_d = -2, n0 = 6, n1 (score ties) = 3, n2 (rank ties) = 1
    assert kendall_tau([1, 2, 2, 2], [1, 1, 2, 3]) == pytest.approx(-2 / math.sqrt((6 - 3) * (6 - 1)), abs=1e-12)
    # [3, 2, 1, 1] vs [1, 2, 2, 3]: 4 concordant, 0 discordant, one score tie, one rank tie -> 4 / sqrt(5 * 5)
    assert kendall_tau([3, 2, 1, 1], [1, 2, 2, 3]) == pytest.approx(0.8, abs=1e-12)


def test_kendall_tau_undefined_is_nan():
    assert math.isnan(kendall_tau([1.0], [1]))
    assert math.isnan(kendall_tau([5, 5, 5], [1, 2, 3]))
    assert math.isnan(kendall_tau([1, 2, 3], [1, 1, 1]))


def test_spearman_rho_known_values():
    # score ranks [4, 2, 3, 1], goodness ranks [4, 3, 2, 1]: Σd² = 2 -> 1 - 6·2 / (4·15) = 0.8
    assert spearman_rho([4, 2, 3, 1], [1, 2, 3, 4]) == pytest.approx(0.8, abs=1e-12)
    assert spearman_rho([1, 2, 3], [1, 2, 3]) == pytest.approx(-1.0, abs=1e-12)
    assert math.isnan(spearman_rho([2, 2], [1, 2]))


def test_spearman_rho_average_ranks_for_ties():
    # scores [10, 5, 5, 7] -> average ranks [4, 1.5, 1.5, 3]; goodness [-1, -2, -2, -3] -> [4, 2.5, 2.5, 1].
    # deviations from 2.5: [1.5, -1, -1, 0.5] and [1.5, 0, 0, -1.5]: Σxy = 1.5, Σx² = Σy² = 4.5 -> 1/3
    assert spearman_rho([10, 5, 5, 7], [1, 2, 2, 3]) == pytest.approx(1 / 3, abs=1e-12)


def test_top1_accuracy_with_ties():
    assert top1_accuracy([0.9, 0.1, 0.5], [1, 2, 3]) == 1.0
    assert top1_accuracy([0.1, 0.9], [1, 2]) == 0.0
    assert top1_accuracy([0.2, 0.9, 0.5], [1, 1, 2]) == 1.0  # any of several rank-1 responses counts
    assert top1_accuracy([0.9, 0.9, 0.1], [1, 2, 3]) == 0.5  # two tied at the top, one of them best
    assert top1_accuracy([0.9, 0.9, 0.9], [1, 1, 2]) == pytest.approx(2 / 3, abs=1e-12)


def test_ranking_metrics_skips_undefined_tau():
    out = ranking_metrics(
        [[3, 2, 1], np.array([4.0, 2.0, 3.0, 1.0]), [5, 5]],
        [[1, 2, 3], [1, 2, 3, 4], [1, 2]],
    )
    # group taus 1, 2/3, nan; rhos 1, 0.8, nan; top-1 1, 1, 0.5
    assert out == {
        "kendall_tau": pytest.approx(5 / 6, abs=1e-12),
        "spearman_rho": pytest.approx(0.9, abs=1e-12),
        "top1_accuracy": pytest.approx(5 / 6, abs=1e-12),
        "n_groups": 3,
        "n_tau_undefined": 1,
    }
    assert _plain(out)


# --- calibration -----------------------------------------------------------------------------------------------------


def _calibration_example() -> list[float]:
    return [0.0, 0.0, LN13_7, -LN13_7, LN3, LN3, -LN3, LN19]


def test_calibration_ece_hand_computed():
    # confidences / correctness per bin (5 bins of width 0.1 over [0.5, 1]):
    #   [0.5, 0.6): 0.5, 0.5 with 0.5, 0.5 (ties)  -> gap 0
    #   [0.6, 0.7): 0.65, 0.65 with 1, 0           -> gap 0.15
    #   [0.7, 0.8): 0.75 x3 with 1, 1, 0           -> gap 0.75 - 2/3 = 1/12
    #   [0.8, 0.9): empty
    #   [0.9, 1.0]: 0.95 with 1                    -> gap 0.05
    # ECE = (2·0 + 2·0.15 + 3·(1/12) + 1·0.05) / 8 = 0.6 / 8
    out = calibration(_calibration_example(), n_bins=5)
    assert out["ece"] == pytest.approx(0.075, abs=1e-12)
    assert out["n"] == 8
    assert _plain(out)


def test_calibration_reliability_table():
    table = calibration(_calibration_example(), n_bins=5)["reliability"]
    assert [b["count"] for b in table] == [2, 2, 3, 0, 1]
    assert [b["lo"] for b in table] == pytest.approx([0.5, 0.6, 0.7, 0.8, 0.9])
    assert [b["hi"] for b in table] == pytest.approx([0.6, 0.7, 0.8, 0.9, 1.0])
    assert table[2]["confidence"] == pytest.approx(0.75, abs=1e-12)
    assert table[2]["accuracy"] == pytest.approx(2 / 3, abs=1e-12)
    assert table[3] == {
        "lo": pytest.approx(0.8),
        "hi": pytest.approx(0.9),
        "count": 0,
        "confidence": None,
        "accuracy": None,
    }


def test_calibration_perfect_saturated_and_empty():
    # 3 of 4 right at confidence 3/4: perfectly calibrated
    assert calibration([LN3, LN3, LN3, -LN3])["ece"] == pytest.approx(0.0, abs=1e-12)
    # huge margins saturate at confidence 1 (last, closed bin) without overflow
    out = calibration([1e4, -1e4], n_bins=2)
    assert [b["count"] for b in out["reliability"]] == [0, 2]
    assert out["ece"] == pytest.approx(0.5, abs=1e-12)
    empty = calibration([], n_bins=3)
    assert math.isnan(empty["ece"]) and [b["count"] for b in empty["reliability"]] == [0, 0, 0]
    with pytest.raises(ValueError, match="n_bins"):
        calibration([1.0], n_bins=0)


# --- length bias -----------------------------------------------------------------------------------------------------


def test_length_bias_hand_computed():
    out = length_bias(
        chosen_scores=[2, 1, 3, 0],
        rejected_scores=[1, 2, 1, 1],
        chosen_lengths=[10, 5, 20, 8],
        rejected_lengths=[5, 10, 10, 8],
    )
    # pairs 0, 2: chosen longer and wins; pair 1: chosen shorter and loses; pair 3: same length
    assert out["chosen_longer_fraction"] == 0.5
    assert out["accuracy_when_chosen_longer"] == 1.0 and out["n_chosen_longer"] == 2
    assert out["accuracy_when_chosen_shorter"] == 0.0 and out["n_chosen_shorter"] == 1
    assert out["n_same_length"] == 1 and out["n"] == 4
    # all 8 responses: scores [2,1,3,0,1,2,1,1] (mean 11/8), lengths [10,5,20,8,5,10,10,8] (mean 9.5)
    # Σ dx·dy = 128 - 8·(11/8)·9.5 = 23.5, Σ dx² = 21 - 8·(11/8)² = 5.875, Σ dy² = 878 - 8·9.5² = 156
    assert out["score_length_corr"] == pytest.approx(23.5 / math.sqrt(5.875 * 156), abs=1e-12)
    assert _plain(out)


def test_length_bias_undefined_parts_are_nan():
    out = length_bias([1.0, 2.0], [0.0, 0.0], [5, 5], [5, 5])
    assert math.isnan(out["score_length_corr"])  # constant length
    assert out["chosen_longer_fraction"] == 0.0 and out["n_same_length"] == 2
    assert math.isnan(out["accuracy_when_chosen_longer"]) and out["n_chosen_longer"] == 0
    json.dumps(out)  # nan is allowed in JSON output


# --- validation ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda: subset_accuracy([1, 2], [0, 1], ["a"]),
        lambda: subset_accuracy([1, 2], [0], ["a", "b"]),
        lambda: kendall_tau([1, 2, 3], [1, 2]),
        lambda: spearman_rho([1, 2], [1, 2, 3]),
        lambda: top1_accuracy([1], [1, 2]),
        lambda: length_bias([1, 2], [0, 1], [3, 4], [5]),
    ],
)
def test_mismatched_lengths_raise(call):
    with pytest.raises(ValueError, match="same length"):
        call()


def test_length_error_names_the_inputs():
    with pytest.raises(ValueError, match="rejected_lengths has 1"):
        length_bias([1, 2], [0, 1], [3, 4], [5])


def test_ranking_metrics_rejects_bad_groups():
    with pytest.raises(ValueError, match="groups_ranks has 1"):
        ranking_metrics([[1, 2], [2, 1]], [[1, 2]])
    with pytest.raises(ValueError, match="group 1: .*same length"):
        ranking_metrics([[1, 2], [2, 1]], [[1, 2], [1]])
    with pytest.raises(ValueError, match="at least one"):
        top1_accuracy([], [])


def test_nan_scores_are_rejected():
    with pytest.raises(ValueError, match="NaN"):
        kendall_tau([1.0, float("nan")], [1, 2])
