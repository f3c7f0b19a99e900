"""A slice of the isolation benchmark (benchmarks/isolation.py): canaries planted in victims' profiles (a private
copy of the test build, its own tritonserver and profile service) reach the victims' own requests and never any of
the attacker's attempts; attempts with forged or foreign credentials are refused; the victims' profiles are unchanged.
"""

from __future__ import annotations

import pytest

from benchmarks.isolation import setup_and_run

pytestmark = pytest.mark.integration


def test_attacker_attempts_leak_no_canary_and_change_no_victim(test_artifacts, tmp_path):
    report, planted = setup_and_run(test_artifacts.root, tmp_path, attempts=80, seed=3, n_victims=3,
                                    log=lambda line: None)
    total = report.total
    assert total.attempts == 80
    assert total.leaks == 0, report.leaks
    assert total.wrongly_answered == 0, report.wrong
    assert total.hangs == 0
    assert report.victims_unchanged
    # the canaries were reachable: each victim's own retriever call and GetProfile return them, before and after
    for control in (report.control_before, report.control_after):
        assert control["retriever"] == control["GetProfile"] == f"{len(planted.victims)}/{len(planted.victims)} victims"
    # both refusals and allowed answers (own data only) were exercised
    assert total.refused > 0 and total.answered > 0
    assert {"forged_token", "profile_GetProfile", "profile_Forget", "stage_context",
            "victim_id_or_injection_in_query"} <= set(report.by_kind)
