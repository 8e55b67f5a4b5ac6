"""The attribute classifier's label mappings (models.attributes.labels): every mapped label is
in its head's vocabulary, and the per-source rules."""

import pytest

from models.attributes import labels as L
from models.taxonomy import GARMENT_CATEGORIES


def test_mapped_categories_are_detector_categories() -> None:
    assert set(L.ARTICLE_TO_CATEGORY.values()) <= set(GARMENT_CATEGORIES)
    for heads in [*L.CCP_TO_HEADS.values(), *L.CLOTHING_TO_HEADS.values()]:
        if "category" in heads:
            assert heads["category"] in GARMENT_CATEGORIES


def test_mapped_clothing_classes_exist() -> None:
    assert set(L.ARTICLE_TO_CLOTHING.values()) <= set(L.CLOTHING_CLASSES)
    assert set(L.CLOTHING_TO_HEADS) == set(L.CLOTHING_CLASSES)
    for heads in L.CCP_TO_HEADS.values():
        if "clothing" in heads:
            assert heads["clothing"] in L.CLOTHING_CLASSES


def test_every_mapping_names_only_known_heads() -> None:
    for heads in [*L.CCP_TO_HEADS.values(), *L.CLOTHING_TO_HEADS.values()]:
        assert set(heads) <= set(L.HEAD_NAMES)


def test_catalogue_row_gets_derived_heads_and_drops_missing_cells() -> None:
    row = {
        "id": "1", "gender": "Men", "masterCategory": "Apparel", "subCategory": "Topwear",
        "articleType": "Shirts", "baseColour": "Blue", "season": "", "year": "2011",
        "usage": "NA",
    }  # fmt: skip
    assert L.catalogue_heads(row) == {
        "gender": "Men",
        "masterCategory": "Apparel",
        "subCategory": "Topwear",
        "articleType": "Shirts",
        "baseColour": "Blue",
        "category": "top",
        "clothing": "shirt",
    }


@pytest.mark.parametrize(
    ("article", "category", "clothing"),
    [
        ("Tshirts", "top", None),  # sleeve length unknown: no clothing-small class
        ("Jeans", "trousers", "pants"),
        ("Heels", "footwear", "shoes"),
        ("Handbags", "bag", None),
        ("Watches", None, None),
    ],
)
def test_article_type_mappings(article, category, clothing) -> None:
    heads = L.catalogue_heads({"articleType": article, "usage": "Casual"})
    assert heads.get("category") == category
    assert heads.get("clothing") == clothing


def test_usage_outside_the_style_vocabulary_is_not_a_label() -> None:
    assert "usage" not in L.catalogue_heads({"articleType": "Shirts", "usage": "Home"})
    assert L.catalogue_heads({"articleType": "Shirts", "usage": "Party"})["usage"] == "Party"


def test_clothing_folder_heads() -> None:
    assert L.clothing_folder_heads("pants") == {
        "clothing": "pants",
        "category": "trousers",
        "masterCategory": "Apparel",
        "subCategory": "Bottomwear",
    }
    with pytest.raises(ValueError, match="not a clothing-small class"):
        L.clothing_folder_heads("socks")


def _ccp(label: str, *others: str) -> dict[str, str]:
    heads = L.ccp_heads(label, frozenset({label, *others}))
    assert heads is not None
    return dict(heads)


def test_ccp_vest_and_bodysuit_depend_on_the_photo() -> None:
    assert _ccp("vest", "t-shirt")["category"] == "outerwear"
    assert _ccp("vest", "jeans")["category"] == "top"
    assert _ccp("bodysuit", "skirt")["category"] == "top"
    assert _ccp("bodysuit", "heels")["category"] == "dress"
    assert _ccp("jeans")["articleType"] == "Jeans"
    assert L.ccp_heads("skin", frozenset({"skin"})) is None


def test_fixed_vocabularies() -> None:
    assert L.fixed_vocabulary("category") == GARMENT_CATEGORIES
    assert L.fixed_vocabulary("usage") == L.STYLE_LABELS
    assert L.fixed_vocabulary("articleType") is None
    assert L.min_train_images("articleType") == 20


def test_every_garment_category_says_which_catalogue_labels_agree_with_it() -> None:
    import csv
    from pathlib import Path

    from models.attributes.labels import ARTICLE_TO_CATEGORY, labels_agreeing
    from models.taxonomy import GARMENT_CATEGORIES

    for category in GARMENT_CATEGORIES:
        for head in ("category", "clothing", "masterCategory", "subCategory", "articleType"):
            if (category, head) != ("bag", "clothing"):  # clothing-small has no bags
                assert labels_agreeing(category, head), (category, head)
        assert labels_agreeing(category, "baseColour") is None
    assert labels_agreeing("bag", "clothing") is None
    assert labels_agreeing("person", "articleType") is None
    trousers = labels_agreeing("trousers", "articleType") or frozenset()
    assert trousers >= {"Jeans", "Trousers", "Track Pants"}
    assert "Dresses" not in trousers
    # the catalogue's own rows agree with the table, bar a handful of odd ones (a sock filed
    # as footwear, a bag filed under Accessories)
    styles = Path(__file__).resolve().parents[2].parent / "shared/data/products/styles.csv"
    rows = [r for r in csv.DictReader(styles.open()) if r["articleType"] in ARTICLE_TO_CATEGORY]
    disagree = [
        r
        for r in rows
        for head in ("masterCategory", "subCategory")
        if r[head] not in (labels_agreeing(ARTICLE_TO_CATEGORY[r["articleType"]], head) or ())
    ]
    assert len(rows) > 9000
    assert len(disagree) <= 10


def test_a_wearers_gender_leaves_out_the_article_types_the_catalogue_never_sells_them() -> None:
    footwear = L.labels_agreeing("footwear", "articleType") or frozenset()
    mens = L.labels_agreeing("footwear", "articleType", "Men") or frozenset()
    assert {"Heels", "Flats"} <= footwear
    assert not {"Heels", "Flats"} & mens
    assert {"Casual Shoes", "Formal Shoes"} <= mens
    assert L.labels_agreeing("footwear", "articleType", "Boys") == mens
    womens = L.labels_agreeing("footwear", "articleType", "Women") or frozenset()
    assert "Heels" in womens
    assert "Formal Shoes" not in womens
    # unsure, unisex or no gender: the category alone decides
    for gender in (None, "Unisex", "unknown"):
        assert L.labels_agreeing("footwear", "articleType", gender) == footwear
    # the detector saw a dress: a man's gender does not empty it
    assert L.labels_agreeing("dress", "articleType", "Men") == L.labels_agreeing(
        "dress", "articleType"
    )
    # gender decides only article types
    assert L.labels_agreeing("footwear", "subCategory", "Men") == L.labels_agreeing(
        "footwear", "subCategory"
    )


def test_the_not_sold_to_table_is_the_catalogues_own_count() -> None:
    from collections import Counter
    from pathlib import Path

    from models.attributes import data as D

    rows = D.read_styles(Path(__file__).resolve().parents[2].parent / "shared/data/products")
    train = [r for r in rows if not D.is_held_out(r["id"], D.CATALOGUE_HELD_OUT)]
    sides = {"Men": {"Men", "Boys", "Unisex"}, "Women": {"Women", "Girls", "Unisex"}}
    totals = Counter(r["articleType"] for r in train)
    for side, genders in sides.items():
        sold = Counter(r["articleType"] for r in train if r["gender"] in genders)
        counted = {
            t for t in L.ARTICLE_TO_CATEGORY if totals[t] >= 5 and sold[t] < 0.02 * totals[t]
        }
        assert counted == L.NOT_SOLD_TO[side], side
