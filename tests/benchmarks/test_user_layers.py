"""benchmarks.user_layers' report arithmetic: paired differences against the right reference row and the summary of
the checkpoints heavy users' validation tails chose."""

import math

from benchmarks.user_layers import HEAVY_BASE, paired_difference, selection_summary
from builders.train_user_layers import SelectedUserAdapter


def test_a_paired_difference_is_taken_per_seed_against_its_reference_row():
    results = {"base": [(0.20, 12.0, 30), (0.30, 10.0, 30)],
               "+ conditional norm": [(0.22, 11.5, 30), (0.33, 9.0, 30)],
               HEAVY_BASE: [(0.50, 8.0, 8), (0.40, 9.0, 8)],
               "heavy held-out users: base + segment LoRA": [(0.45, 8.5, 8), (0.40, 9.0, 8)]}
    assert paired_difference(results, "+ conditional norm", 0) == "+0.0250 ± 0.0071"  # deltas .02, .03
    assert paired_difference(results, "+ conditional norm", 1) == "-0.7500 ± 0.3536"
    assert paired_difference(results, "heavy held-out users: base + segment LoRA", 0) == "-0.0250 ± 0.0354"
    assert paired_difference(results, "base", 0) == paired_difference(results, HEAVY_BASE, 1) == "—"
    three = {"base": [(0.2, 1, 9), (0.3, 1, 9), (0.4, 1, 9)], "x": [(0.21, 1, 9), (0.32, 1, 9), (0.43, 1, 9)]}
    assert paired_difference(three, "x", 0) == "+0.0200 ± 0.0100 (t +3.5)"  # 0.02 / (0.01 / sqrt 3)


def test_the_selection_summary_counts_steps_and_averages_only_adapters_with_a_tail():
    chosen = [SelectedUserAdapter(None, None, 0, 2.0, 2.0), SelectedUserAdapter(None, None, 10, 1.0, 3.0),
              SelectedUserAdapter(None, None, None, math.nan, math.nan)]
    (line,) = selection_summary(chosen)
    assert "3 adapters" in line
    assert "step 0: 1, step 10: 1, too few purchases to keep a tail (last step kept): 1" in line
    assert "segment adapter 2.500 → chosen 1.500 (mean over the 2 adapters with a tail;" in line
