"""Defect types as people and spreadsheets read them: shares only where they say something."""

from __future__ import annotations

from iadgpt_desktop.storage.wording import describe_defect_types, format_defect_types, shares_are_equal

BUILT_IN = [("pitting", 0.5), ("dent", 0.5)]  # the built-in tower: equal shares by design
THREE_EVEN = [("crack", 0.3333), ("broken_edge", 0.3333), ("hole", 0.3333)]
OPEN_CLIP = [("pitting", 0.9933), ("crack", 0.0067)]


def test_equal_shares_read_as_names_alone_like_the_chat() -> None:
    assert shares_are_equal(BUILT_IN) and shares_are_equal(THREE_EVEN) and shares_are_equal([("dent", 1.0)])
    assert describe_defect_types(BUILT_IN) == "pitting or dent"
    assert describe_defect_types(THREE_EVEN) == "crack or broken edge or hole"
    assert describe_defect_types(THREE_EVEN, limit=2) == "crack or broken edge"
    assert describe_defect_types([("dent", 1.0)]) == "dent"
    assert format_defect_types(BUILT_IN) == "pitting; dent"


def test_differing_shares_keep_their_percentages() -> None:
    assert not shares_are_equal(OPEN_CLIP) and not shares_are_equal([("crack", 0.7)])
    assert describe_defect_types(OPEN_CLIP) == "pitting 99 %, crack 1 %"
    assert describe_defect_types([("crack", 0.7)]) == "crack 70 %"
    assert format_defect_types(OPEN_CLIP) == "pitting:0.9933; crack:0.0067"


def test_no_types_read_as_nothing() -> None:
    assert not shares_are_equal([])
    assert describe_defect_types([]) == "" and format_defect_types([]) == ""


def test_counts_take_the_noun_in_the_right_number() -> None:
    from iadgpt_desktop.storage.wording import counted

    assert counted(1, "inspection") == "1 inspection"  # History said "1 inspections"
    assert counted(0, "image") == "0 images" and counted(2048, "inspection") == "2,048 inspections"
