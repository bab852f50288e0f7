"""Tables, image folders, read_catalog and write_jsonl: bad rows are skipped and reported exactly."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from catalog_testkit import solid_png
from modalens.catalog import CatalogError, Product, read_catalog, read_image_folder, read_table, write_jsonl


@pytest.fixture()
def shop(tmp_path: Path) -> Path:
    """A shop folder with two real photos under images/."""
    solid_png(tmp_path / "images" / "a.png", (255, 0, 0))
    solid_png(tmp_path / "images" / "b.png", (0, 255, 0))
    return tmp_path


def errors_of(catalog) -> list[tuple[int, str]]:
    return [(e.row, e.reason) for e in catalog.errors]


CSV_TEXT = (
    "id,image,title,price,masterCategory,articleType,baseColour,split,fit\n"  # line 1
    "p1,images/a.png,Red tee,19.5,Apparel,Tshirts,Red,Train,slim\n"  # 2 good
    "p2,images/a.png,Bad price,abc,Apparel,Tshirts,Red,train,\n"  # 3 bad price
    ",images/a.png,No id,1,Apparel,Tshirts,Red,train,\n"  # 4 missing id
    "p1,images/b.png,Dup,2,Apparel,Tshirts,Green,train,\n"  # 5 duplicate
    "p3,images/a.png,Too short,2,Apparel,Tshirts,Red,train\n"  # 6 8 columns
    "p4,images/missing.png,No photo,2,Apparel,Tshirts,Red,val,\n"  # 7 missing image
    '\n'  # 8 blank: ignored
    'p5,images/a.png|images/b.png,"Two photos, and a\nnewline",,Footwear,Shoes,Black,test,\n'  # 9-10 good
    "p6,,Text only,0,,,,,\n"  # 11 good, no image
    "p7,images/a.png,Negative,-3,Apparel,Tshirts,Red,train,\n"  # 12 negative price
)


def test_csv_skips_exactly_the_bad_rows_and_keeps_the_good(shop: Path) -> None:
    path = shop / "products.csv"
    path.write_text(CSV_TEXT, encoding="utf-8")
    catalog = read_table(path)
    assert [p.id for p in catalog] == ["p1", "p5", "p6"]
    rows = errors_of(catalog)
    assert [row for row, _ in rows] == [3, 4, 5, 6, 7, 12]
    reasons = dict(rows)
    assert reasons[3] == "bad price 'abc': not a number"
    assert reasons[4] == "missing id"
    assert reasons[5] == "duplicate id 'p1' (first on line 2)"
    assert reasons[6] == "expected 9 columns, got 8"
    assert reasons[7] == f"image not found: {shop / 'images' / 'missing.png'}"
    assert "non-negative" in reasons[12]
    assert all(e.source == str(path) for e in catalog.errors)


def test_csv_columns_map_to_fields_attributes_and_extra(shop: Path) -> None:
    path = shop / "products.csv"
    path.write_text(CSV_TEXT, encoding="utf-8")
    p1, p5, p6 = read_table(path)
    assert p1.images == [str(shop / "images" / "a.png")]
    assert p1.title == "Red tee" and p1.price == 19.5 and p1.split == "train"
    assert p1.attributes == {"master_category": "Apparel", "article_type": "Tshirts", "colour": "Red"}
    assert p1.extra == {"fit": "slim"}
    assert p5.images == [str(shop / "images" / "a.png"), str(shop / "images" / "b.png")]
    assert p5.title == "Two photos, and a\nnewline" and p5.price is None
    assert p6.images == [] and p6.price == 0.0 and p6.split is None and p6.attributes == {}


def test_tsv_and_images_root(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    solid_png(photos / "x.png")
    table = tmp_path / "tables" / "cat.tsv"
    table.parent.mkdir()
    table.write_text("ID\timage\tColor\tType\tbrand\n1\tx.png\tnavy\tJeans\tAcme\n", encoding="utf-8")
    (product,) = read_table(table, images_root=photos)
    assert product.images == [str(photos / "x.png")]
    assert product.attributes == {"colour": "navy", "article_type": "Jeans", "brand": "Acme"}
    missing = read_table(table)  # images resolve against the table's own folder by default
    assert len(missing) == 0 and "image not found" in missing.errors[0].reason


def test_jsonl_bad_lines(shop: Path) -> None:
    lines = [
        {"id": "a", "images": ["images/a.png", "images/b.png"], "year": 2011, "colour": "Red", "price": 5},  # 1
        "{not json",  # 2
        "[1, 2]",  # 3
        {"title": "no id"},  # 4
        "",  # 5 blank
        {"id": "a", "image": "images/b.png"},  # 6 duplicate
        {"id": "b", "image": 7},  # 7 bad image type
        {"id": "c", "gender": ["Men", "Women"]},  # 8 attribute is a list
        {"id": 42, "image": "images/b.png", "material": "cotton", "tags": ["x", "y"], "split": "val"},  # 9
    ]
    path = shop / "cat.jsonl"
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n", encoding="utf-8")
    catalog = read_table(path)
    assert [p.id for p in catalog] == ["a", "42"]
    assert [row for row, _ in errors_of(catalog)] == [2, 3, 4, 6, 7, 8]
    reasons = dict(errors_of(catalog))
    assert reasons[2].startswith("malformed JSON")
    assert reasons[3] == "expected a JSON object, got list"
    assert reasons[4] == "missing id"
    assert reasons[6] == "duplicate id 'a' (first on line 1)"
    assert "image paths must be" in reasons[7]
    assert "'gender'" in reasons[8]
    a, b = catalog
    assert a.attributes == {"year": "2011", "colour": "Red"} and a.price == 5.0 and len(a.images) == 2
    assert b.extra == {"tags": ["x", "y"]} and b.attributes == {"material": "cotton"} and b.split == "val"


def test_limit_counts_good_products(shop: Path) -> None:
    path = shop / "products.csv"
    path.write_text(CSV_TEXT, encoding="utf-8")
    assert [p.id for p in read_table(path, limit=2)] == ["p1", "p5"]
    assert len(read_table(path, limit=0)) == 0


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("cat.xlsx", b"id\n1\n", "supported: .csv, .tsv, .jsonl, .ndjson"),
        ("cat.csv", b"", "empty"),
        ("cat.jsonl", b"\n  \n", "empty"),
        ("cat.csv", b"\n\n,,\n", "no header"),
        ("cat.csv", b"name,image\nx,y\n", "no 'id' column"),
        ("cat.csv", b"id,title,title\n1,a,b\n", "appears twice"),
        ("cat.csv", "id,caf\u00e9\n1,ok\n".encode("latin-1"), "not UTF-8 text: invalid byte 0xe9 on line 1"),
        ("cat.csv", "id,title\n1,x\n".encode("utf-16"), "UTF-16"),
        ("nope.csv", None, "no such file"),
    ],
)
def test_whole_file_problems_raise(tmp_path: Path, name: str, content: bytes | None, message: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CatalogError, match=message) as info:
        read_table(path)
    assert str(path) in str(info.value)


# ---------------------------------------------------------------- quotes that never close, bytes that are not UTF-8


def numbered_csv(rows: int = 14) -> list[str]:
    """A header and ``rows`` clean rows whose id names their own line: line n holds id Ln."""
    return ["id,title,price"] + [f"L{n},title {n},{n}" for n in range(2, rows + 2)]


def read_lines_as_csv(tmp_path: Path, lines: list[str], newline: str = "\n"):
    path = tmp_path / "shop.csv"
    path.write_bytes(newline.join(lines).encode("utf-8") + newline.encode())
    return read_table(path)


@pytest.mark.parametrize(
    "case, edits",
    [
        ("never closed", {4: 'L4,"title 4,4'}),
        ("closed by a later quoted field", {4: 'L4,"title 4,4', 9: 'L9,"title 9",9'}),  # the "2 added of 2" case
        ("closed cleanly by a stray quote", {4: 'L4,"title 4,4', 7: 'L7,title 7",7'}),
        ("closed on the next line", {4: 'L4,"title 4,4', 5: 'L5,title 5",5'}),
        ("in the id column", {4: '"L4,title 4,4', 12: 'L12,title 12",12'}),
    ],
)
def test_an_unterminated_quote_loses_only_its_own_row(tmp_path: Path, case: str, edits: dict[int, str]) -> None:
    lines = numbered_csv()
    for number, text in edits.items():
        lines[number - 1] = text
    catalog = read_lines_as_csv(tmp_path, lines)
    assert errors_of(catalog)[0][0] == 4 and "unterminated quote" in errors_of(catalog)[0][1], case
    assert [row for row, _ in errors_of(catalog)] == [4]
    assert [p.id for p in catalog] == [f"L{n}" for n in range(2, 16) if n != 4]
    assert catalog[0].title == "title 2" and catalog[-1].price == 15.0


@pytest.mark.parametrize("seed", range(30))
def test_stray_quotes_anywhere_never_swallow_rows(tmp_path: Path, seed: int) -> None:
    """Every line is a product or a reported error: quotes opened at the start of random fields of random rows."""
    import random

    rng = random.Random(seed)
    lines = numbered_csv(40)
    broken = sorted(rng.sample(range(2, 42), rng.randint(1, 4)))
    for number in broken:
        cells = lines[number - 1].split(",")
        cells[rng.randrange(3)] = '"' + cells[rng.randrange(3)]
        lines[number - 1] = ",".join(cells)
    catalog = read_lines_as_csv(tmp_path, lines, newline=rng.choice(["\n", "\r\n"]))
    assert [row for row, _ in errors_of(catalog)] == broken
    assert [p.id for p in catalog] == [f"L{n}" for n in range(2, 42) if n not in broken]


def test_quoted_fields_over_several_lines_still_load(tmp_path: Path) -> None:
    lines = [
        "id,title,description,price",
        'a1,Tee,"Soft cotton,\nmachine wash, cold\n\nsecond paragraph",5',
        'a2,"Two\nline title","",6',
        'a3,Plain,"He said ""hi"",\nthen left",7',
        "a4,Last,x,8",
    ]
    catalog = read_lines_as_csv(tmp_path, lines)
    assert catalog.errors == []
    assert [p.id for p in catalog] == ["a1", "a2", "a3", "a4"]
    assert catalog[0].description == "Soft cotton,\nmachine wash, cold\n\nsecond paragraph"
    assert catalog[2].description == 'He said "hi",\nthen left'


def test_a_quote_that_runs_past_the_field_limit_is_reported_and_the_rest_kept(tmp_path: Path) -> None:
    lines = numbered_csv(3) + [f"M{n},{'x' * 2000},1" for n in range(100)]
    lines[2] = 'L3,"title 3,3'  # swallows 200 kB: more than csv's field limit
    catalog = read_lines_as_csv(tmp_path, lines)
    assert [row for row, _ in errors_of(catalog)] == [3]
    assert len(catalog) == 2 + 100


def test_a_byte_that_is_not_utf8_loses_only_its_row(tmp_path: Path) -> None:
    path = tmp_path / "shop.csv"
    path.write_bytes(
        b"id,title,price\n"
        b"a,ok,1\n"
        b"b,caf\xe9,2\n"  # Latin-1
        b'c,"two\nlines \xff",3\n'  # inside a quoted field over two lines
        b"d,fine,4\n"
        b"\xe9,e,5\n"  # in the id
    )
    catalog = read_table(path)
    assert [p.id for p in catalog] == ["a", "d"]
    rows = errors_of(catalog)
    assert [row for row, _ in rows] == [3, 4, 7]
    assert all("not UTF-8" in reason for _, reason in rows)
    assert "0xe9" in rows[0][1] and "'title'" in rows[0][1]
    assert "0xff" in rows[1][1]


def test_jsonl_line_that_is_not_utf8_loses_only_itself(tmp_path: Path) -> None:
    path = tmp_path / "shop.jsonl"
    path.write_bytes(b'{"id": "a"}\n{"id": "b", "title": "caf\xe9"}\n{"id": "c"}\n')
    catalog = read_table(path)
    assert [p.id for p in catalog] == ["a", "c"]
    assert [row for row, _ in errors_of(catalog)] == [2]
    assert "not UTF-8" in catalog.errors[0].reason and "0xe9" in catalog.errors[0].reason


def test_utf8_bom_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes("id,title\r\n1,Caf\u00e9\r\n2,Tee\r\n".encode("utf-8-sig"))
    catalog = read_table(path)
    assert [(p.id, p.title) for p in catalog] == [("1", "Caf\u00e9"), ("2", "Tee")]


def test_write_jsonl_round_trips(shop: Path, tmp_path: Path) -> None:
    outside = solid_png(tmp_path.parent / f"{tmp_path.name}-elsewhere" / "z.png")
    products = [
        Product(
            "x1",
            [str(shop / "images" / "a.png"), str(outside), "https://example.com/p.jpg"],
            title="Caf\u00e9 tee",
            description="soft",
            attributes={"colour": "red", "fit": "slim"},
            price=9.99,
            split="train",
            extra={"sizes": ["S", "M"], "stock": {"S": 3}},
        ),
        Product("x2", title="text only"),
    ]
    out = shop / "saved.jsonl"
    assert write_jsonl(products, out) == out
    stored = json.loads(out.read_text(encoding="utf-8").splitlines()[0])
    assert stored["images"][0] == "images/a.png"  # portable inside the folder
    assert stored["images"][1] == str(outside)
    back = read_table(out)
    assert back.errors == []
    assert [p.to_dict() for p in back] == [p.to_dict() for p in products]
    assert not [f for f in os.listdir(shop) if f.endswith(".tmp")]


def test_image_folder(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    solid_png(root / "dresses" / "red_silk-dress.png")
    solid_png(root / "dresses" / "red_silk-dress.JPG")  # same id: reported, not loaded twice
    solid_png(root / "top.png")
    solid_png(root / ".hidden" / "x.png")
    solid_png(root / ".skip.png")
    (root / "notes.txt").write_text("not a photo")
    catalog = read_image_folder(root)
    assert [p.id for p in catalog] == ["dresses/red_silk-dress", "top"]
    dress, top = catalog
    assert dress.title == "red silk dress" and dress.attributes == {"category": "dresses"}
    assert dress.images == [str(root / "dresses" / "red_silk-dress.JPG")]
    assert top.attributes == {} and top.images == [str(root / "top.png")]
    assert len(catalog.errors) == 1 and "duplicate id 'dresses/red_silk-dress'" in catalog.errors[0].reason


def test_image_folder_without_images(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(CatalogError, match="no image files"):
        read_image_folder(tmp_path)


def test_read_catalog_dispatches(shop: Path, tmp_path: Path) -> None:
    (shop / "products.csv").write_text("id,image,split\nk1,images/a.png,train\nk2,images/b.png,test\n", encoding="utf-8")
    kagl_like = read_catalog(str(shop))
    assert kagl_like.name == "kagl" and [p.id for p in kagl_like] == ["k1", "k2"]
    assert [p.id for p in read_catalog(str(shop / "products.csv"))] == ["k1", "k2"]
    folder = read_catalog(str(shop / "images"))
    assert [p.id for p in folder] == ["a", "b"]
    with pytest.raises(CatalogError, match="not a named catalogue"):
        read_catalog(str(tmp_path / "no-such-thing"))
    with pytest.raises(CatalogError, match="supported"):
        read_catalog(str(shop / "images" / "a.png"))
