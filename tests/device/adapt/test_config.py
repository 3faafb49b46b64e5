import re

import pytest

from device.adapt import AdaptConfig


def test_defaults_are_valid_and_round_trip():
    config = AdaptConfig()
    assert AdaptConfig(**config.to_dict()) == config


@pytest.mark.parametrize(
    ("field", "value", "allowed"),
    [
        ("quarantine_size", 0, "an integer >= 1"),
        ("max_age", 2.5, "an integer >= 1"),
        ("check_every", True, "an integer >= 1"),
        ("cooldown", -1, "an integer >= 0"),
        ("cluster_radius", 0.0, "a number > 0"),
        ("max_growth", float("nan"), "a number > 0"),
        ("agreement", 1.5, "within [0, 1]"),
        ("min_confidence", "0.5", "within [0, 1]"),
        ("stable_overlap", 0.0, "within (0, 1]"),
        ("label_weight", 0.0, "within (0, 1]"),
        ("pseudo_weight", 1.5, "within (0, 1]"),
        ("learned_share", 0, "within (0, 1]"),
        ("join_distance", -0.5, "a number >= 0"),
        ("novel_vote", 1, "true or false"),
        ("novel_radius", 0.0, "a number > 0"),
    ],
)
def test_bad_values_name_the_field_and_what_is_allowed(field, value, allowed):
    with pytest.raises(ValueError, match=rf"adaptation\.{field} must be .*{re.escape(allowed)}"):
        AdaptConfig(**{field: value})


def test_cluster_must_fit_in_the_quarantine():
    with pytest.raises(ValueError, match="min_cluster must be <= quarantine_size"):
        AdaptConfig(quarantine_size=10, min_cluster=12, join_size=4)
