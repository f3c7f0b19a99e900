from benchmarks import health_routing


def test_first_turns_outside_health_get_no_health_item_and_health_ones_are_answered(test_artifacts, tmp_path):
    result = health_routing.measure(test_artifacts.root, limit=4)
    assert result["other"]["requests"] == 4 and result["health"]["requests"] == 4
    assert result["other"]["leaks"] == []
    assert result["health"]["with_health_item"] <= result["health"]["lists"] <= 4
    text = health_routing.markdown(result, {"cpu": "x", "cores": 2, "git_commit": "abc"}, "python -m x")
    assert "| labeled outside health | 4 |" in text and "Leaks:\n- none" in text
