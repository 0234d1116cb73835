"""kb.text.mapped.SortedMap: binary-search lookups, remembered up to a bound, answer exactly as the table does."""

from __future__ import annotations

import pytest

from kb.text import mapped
from kb.text.mapped import SortedMap, sorted_arrays

TABLE = {"工资": 3, "劳动": 7, "劳动报酬": 11, "a": 1, "zz": 2}


def test_lookups_hits_and_misses_match_the_table_on_every_repeat(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mapped, "MEMO", 3)  # the memo starts afresh several times below
    table = SortedMap(*sorted_arrays(TABLE))
    asks = ["劳动", "劳", "劳动报酬", "", "b", "劳动报酬法律规定", "工资", "a"] * 3
    for key in asks:
        assert table.get(key) == TABLE.get(key)
        assert (key in table) == (key in TABLE)
        assert table.find(key) == (sorted(TABLE).index(key) if key in TABLE else -1)
    assert len(table._memo) <= 3
    assert dict(table.items()) == TABLE
    with pytest.raises(KeyError):
        table["劳"]
