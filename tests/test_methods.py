"""The Table 1 registry: names, display names, heads, masks (training of each entry: tests/proportion)."""

from __future__ import annotations

import pytest

from maskllp.errors import InputError
from maskllp.intervals import CLINICAL_TIERS
from maskllp.methods import METHODS, get_method, parse_methods

TABLE_1 = ["det", "class", "o-reg", "prop-nomask", "ours-nomask", "lpi", "prop", "wprop", "wprop-listnet",
           "focalprop", "ours"]
MASKED = {"lpi", "prop", "wprop", "wprop-listnet", "focalprop", "ours"}


def test_registry_holds_table_1_in_order() -> None:
    assert list(METHODS) == TABLE_1
    assert {m.name for m in METHODS.values() if m.uses_mask} == MASKED
    assert METHODS["ours"].display_name == "Ours" and METHODS["prop-nomask"].display_name == "Prop w/o mask"
    assert {m.head for m in METHODS.values()} == {"count", "class", "ordinal", "maps"}
    assert METHODS["ours"].loss_factory is METHODS["ours-nomask"].loss_factory


def test_get_and_parse_methods() -> None:
    assert get_method("OURS") is METHODS["ours"]
    with pytest.raises(InputError, match="unknown method 'ourz'"):
        get_method("ourz")
    assert parse_methods("all") == list(METHODS.values())
    assert [m.name for m in parse_methods("ours, prop,ours")] == ["ours", "prop"]
    with pytest.raises(InputError):
        parse_methods(" , ")


def test_network_specs_follow_the_head_and_the_scheme() -> None:
    assert get_method("ours").network_spec(5).n_outputs == 2
    assert get_method("class").network_spec(len(CLINICAL_TIERS)).n_outputs == 3
    assert get_method("o-reg").network_spec(5).n_outputs == 4
    assert get_method("ours").network_spec(5).masked
    assert not get_method("ours-nomask").network_spec(5).masked
    with pytest.raises(ValueError, match="stage-1"):
        get_method("det").network_spec(5)
