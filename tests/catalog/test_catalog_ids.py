"""Product ids are one line of printable text of sane length: checked in the schema, so every reader and the API share it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from catalog_testkit import solid_png
from modalens.catalog import CatalogError, Product, read_image_folder, read_table
MAX_ID_LENGTH = 512  # modalens.catalog.schema.MAX_ID_LENGTH (written out so the test also runs against code without it)


@pytest.mark.parametrize(
    "bad, reason",
    [
        ("a\x00b", "U+0000"),
        ("line\nbreak", "U+000A"),
        ("carriage\rreturn", "U+000D"),
        ("tab\there", "U+0009"),
        ("bell\x07", "U+0007"),
        ("del\x7f", "U+007F"),
        ("c1\x85next-line", "U+0085"),
        ("para\u2029graph", "U+2029"),
        ("lone\udce9surrogate", "U+DCE9"),
        ("x" * (MAX_ID_LENGTH + 1), f"over the limit of {MAX_ID_LENGTH}"),
        ("y" * 5000, "5000 characters"),
    ],
)
def test_bad_ids_are_refused_with_the_reason(bad: str, reason: str) -> None:
    with pytest.raises(CatalogError, match=re.escape(reason)) as info:
        Product(bad)
    assert "id" in str(info.value)
    assert len(str(info.value)) < 300  # a 5,000-character id is not echoed whole


@pytest.mark.parametrize("good", ["p1", "x" * MAX_ID_LENGTH, "dresses/red silk", "a?b#c d", "caf\u00e9-\u30b7\u30e3\u30c4", " padded "])
def test_ordinary_ids_are_kept(good: str) -> None:
    assert Product(good).id == good.strip()


def test_tables_report_bad_ids_as_rows_and_keep_the_rest(tmp_path: Path) -> None:
    csv_path = tmp_path / "shop.csv"
    csv_path.write_text(
        "id,title\n"
        "ok1,fine\n"  # 2
        '"two\nlines",x\n'  # 3-4
        f"{'z' * 5000},long\n"  # 5
        "nul\x00id,x\n"  # 6
        "ok2,fine\n",  # 7
        encoding="utf-8",
    )
    catalog = read_table(csv_path)
    assert [p.id for p in catalog] == ["ok1", "ok2"]
    assert [e.row for e in catalog.errors] == [3, 5, 6]
    reasons = [e.reason for e in catalog.errors]
    assert "U+000A" in reasons[0] and "5000 characters" in reasons[1] and "U+0000" in reasons[2]

    jsonl_path = tmp_path / "shop.jsonl"
    jsonl_path.write_text(
        "\n".join(json.dumps({"id": i}) for i in ["a", "b\u2028c", "n\u0000l", "d", "e" * 600]) + "\n", encoding="utf-8"
    )
    catalog = read_table(jsonl_path)
    assert [p.id for p in catalog] == ["a", "d"]
    assert [e.row for e in catalog.errors] == [2, 3, 5]


def test_image_folder_reports_a_file_name_that_makes_a_bad_id(tmp_path: Path) -> None:
    solid_png(tmp_path / "good.png")
    solid_png(tmp_path / "new\nline.png")
    catalog = read_image_folder(tmp_path)
    assert [p.id for p in catalog] == ["good"]
    assert len(catalog.errors) == 1 and "U+000A" in catalog.errors[0].reason
