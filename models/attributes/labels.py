"""The attribute classifier's heads and every label mapping between its three data sources.

Heads (in the network's output order, `HEAD_NAMES`):
- `category`: models.taxonomy.GARMENT_CATEGORIES, the detector's vocabulary.
- `clothing`: the clothing-small classes (`CLOTHING_CLASSES`), so real-world garment photos are
  scored in their own vocabulary without any label mapping at inference.
- `gender`, `masterCategory`, `subCategory`, `articleType`, `baseColour`, `season`, `usage`: the
  catalogue's columns. `usage` is the catalogue's style label (the tagger's `style`).

A source that does not know a head's label for an item leaves it out (masked from that head's
loss). The tables below say which label each source gives each head; weights/attributes.md
copies them into the model card. The label lists of the data-driven heads are decided when
training (labels with enough training images, `min_train_images`) and shipped in the manifest.
"""

from __future__ import annotations

from collections.abc import Mapping

from models.taxonomy import GARMENT_CATEGORIES

CATALOGUE_HEADS: tuple[str, ...] = (
    "gender",
    "masterCategory",
    "subCategory",
    "articleType",
    "baseColour",
    "season",
    "usage",
)
HEAD_NAMES: tuple[str, ...] = ("category", "clothing", *CATALOGUE_HEADS)
GENDER_HEAD = "gender"

CLOTHING_CLASSES: tuple[str, ...] = (
    "dress",
    "hat",
    "longsleeve",
    "outwear",
    "pants",
    "shirt",
    "shoes",
    "shorts",
    "skirt",
    "t-shirt",
)

# The catalogue's style vocabulary (`usage`), fixed rather than counted: the tagger promises these
# styles even though Party, Travel and Smart Casual have only a handful of catalogue photos.
STYLE_LABELS: tuple[str, ...] = (
    "Casual",
    "Formal",
    "Sports",
    "Ethnic",
    "Smart Casual",
    "Party",
    "Travel",
)

# Catalogue cells that mean "no label".
MISSING = frozenset({"", "NA", "nan", "None"})


def min_train_images(head: str) -> int:
    """A catalogue label gets an output only with at least this many training photos. The
    articleType goal is stated for types with at least 20 training photos."""
    return 20 if head == "articleType" else 10


# --- catalogue articleType -> category (detector vocabulary). Types not listed (watches,
# jewellery, innerwear, socks, belts, wallets, ties, personal care, sarees, ...) are no detector
# category: their category label is missing.
ARTICLE_TO_CATEGORY: Mapping[str, str] = {
    **dict.fromkeys(
        (
            "Tshirts", "Shirts", "Tops", "Kurtas", "Kurtis", "Tunics", "Sweaters", "Sweatshirts",
            "Waistcoat", "Camisoles", "Innerwear Vests",
        ),
        "top",
    ),
    **dict.fromkeys(("Jackets", "Rain Jacket", "Shrug", "Blazers"), "outerwear"),
    **dict.fromkeys(("Dresses", "Nightdress"), "dress"),
    "Skirts": "skirt",
    **dict.fromkeys(("Shorts", "Lounge Shorts"), "shorts"),
    **dict.fromkeys(
        (
            "Trousers", "Jeans", "Track Pants", "Capris", "Leggings", "Jeggings", "Lounge Pants",
            "Patiala", "Churidar", "Rain Trousers",
        ),
        "trousers",
    ),
    **dict.fromkeys(
        (
            "Casual Shoes", "Sports Shoes", "Formal Shoes", "Heels", "Flats", "Sandals",
            "Sports Sandals", "Flip Flops", "Booties",
        ),
        "footwear",
    ),
    **dict.fromkeys(
        (
            "Handbags", "Backpacks", "Clutches", "Laptop Bag", "Duffel Bag", "Messenger Bag",
            "Rucksacks", "Waist Pouch", "Mobile Pouch",
        ),
        "bag",
    ),
    **dict.fromkeys(("Caps", "Hat"), "hat"),
}  # fmt: skip

# --- detector category -> the labels of the catalogue heads that agree with it (the catalogue's
# own (masterCategory, subCategory) pairs of each category's article types, styles.csv). A
# garment the detector found is read among these (`labels_agreeing`): a detected pair of
# trousers is no dress, whatever its crop looks like from behind.
_CATEGORY_PARENTS: Mapping[str, Mapping[str, tuple[str, ...]]] = {
    "top": {"masterCategory": ("Apparel",), "subCategory": ("Topwear", "Innerwear")},
    "outerwear": {"masterCategory": ("Apparel",), "subCategory": ("Topwear",)},
    "dress": {
        "masterCategory": ("Apparel",),
        "subCategory": ("Dress", "Loungewear and Nightwear"),
    },
    "skirt": {"masterCategory": ("Apparel",), "subCategory": ("Bottomwear",)},
    "shorts": {
        "masterCategory": ("Apparel",),
        "subCategory": ("Bottomwear", "Loungewear and Nightwear"),
    },
    "trousers": {
        "masterCategory": ("Apparel",),
        "subCategory": ("Bottomwear", "Loungewear and Nightwear"),
    },
    "footwear": {"masterCategory": ("Footwear",), "subCategory": ("Shoes", "Sandal", "Flip Flops")},
    "bag": {"masterCategory": ("Accessories",), "subCategory": ("Bags",)},
    "hat": {"masterCategory": ("Accessories",), "subCategory": ("Headwear",)},
}


# --- garment article types the catalogue sells to one side only: of each type of
# ARTICLE_TO_CATEGORY with at least 5 training photos (held-out photos not counted), under 2%
# are of the other side's genders (Men and Boys / Women and Girls; Unisex counts for both).
# Counted from styles.csv; tests/unit/test_attribute_labels.py recounts it. Why: a man's shoes
# are not Heels. The catalogue calls no men's shoe that, but the classifier, which sees only the
# shoe, leans to it for dark shoes seen small (the demo's store clip), where the wearer's gender,
# voted over the whole person, is surer.
NOT_SOLD_TO: Mapping[str, frozenset[str]] = {
    "Men": frozenset({
        "Capris", "Camisoles", "Clutches", "Dresses", "Flats", "Heels", "Jeggings", "Kurtas",
        "Kurtis", "Leggings", "Mobile Pouch", "Nightdress", "Skirts", "Tops", "Tunics",
    }),
    "Women": frozenset({"Formal Shoes", "Lounge Shorts"}),
}  # fmt: skip
GENDER_SIDE: Mapping[str, str] = {"Men": "Men", "Boys": "Men", "Women": "Women", "Girls": "Women"}


def labels_agreeing(category: str, head: str, gender: str | None = None) -> frozenset[str] | None:
    """The labels of `head` a garment of detector `category` can have; None when the category
    decides nothing of the head (colour, season, usage, gender; a bag's clothing class) or is
    not a garment category. With the wearer's `gender` (a gender head label), article types
    the catalogue does not sell to that gender's side are left out too, unless that would
    leave none: the detector's category, which saw the garment, outranks the gender."""
    if category not in _CATEGORY_PARENTS:
        return None
    if head == "category":
        return frozenset({category})
    if head == "articleType":
        found = frozenset(t for t, c in ARTICLE_TO_CATEGORY.items() if c == category)
        side = GENDER_SIDE.get(gender or "")
        if side is not None:
            found = found - NOT_SOLD_TO[side] or found
    elif head == "clothing":
        found = frozenset(k for k, v in CLOTHING_TO_HEADS.items() if v["category"] == category)
    else:
        found = frozenset(_CATEGORY_PARENTS[category].get(head, ()))
    return found or None


# --- catalogue articleType -> clothing-small class, only where the class is certain. Tshirts
# are left out on purpose: about one catalogue T-shirt in six has long sleeves (clothing-small's
# "longsleeve"), and Tops are T-shirts, shirts and blouses alike.
ARTICLE_TO_CLOTHING: Mapping[str, str] = {
    "Shirts": "shirt",
    **dict.fromkeys(("Sweaters", "Sweatshirts"), "longsleeve"),
    **dict.fromkeys(("Jackets", "Rain Jacket", "Blazers"), "outwear"),
    **dict.fromkeys(("Dresses",), "dress"),
    "Skirts": "skirt",
    "Shorts": "shorts",
    **dict.fromkeys(
        ("Trousers", "Jeans", "Track Pants", "Leggings", "Jeggings", "Rain Trousers"), "pants"
    ),
    **dict.fromkeys(
        ("Casual Shoes", "Sports Shoes", "Formal Shoes", "Heels", "Flats", "Booties"), "shoes"
    ),
    **dict.fromkeys(("Caps", "Hat"), "hat"),
}  # fmt: skip

# --- clothing-small folder -> the other heads' labels it implies (only the certain ones).
CLOTHING_TO_HEADS: Mapping[str, Mapping[str, str]] = {
    "dress": {
        "category": "dress",
        "masterCategory": "Apparel",
        "subCategory": "Dress",
        "articleType": "Dresses",
    },
    "hat": {"category": "hat", "masterCategory": "Accessories", "subCategory": "Headwear"},
    "longsleeve": {"category": "top", "masterCategory": "Apparel", "subCategory": "Topwear"},
    "outwear": {"category": "outerwear", "masterCategory": "Apparel", "subCategory": "Topwear"},
    "pants": {"category": "trousers", "masterCategory": "Apparel", "subCategory": "Bottomwear"},
    "shirt": {
        "category": "top",
        "masterCategory": "Apparel",
        "subCategory": "Topwear",
        "articleType": "Shirts",
    },
    "shoes": {"category": "footwear", "masterCategory": "Footwear", "subCategory": "Shoes"},
    "shorts": {
        "category": "shorts",
        "masterCategory": "Apparel",
        "subCategory": "Bottomwear",
        "articleType": "Shorts",
    },
    "skirt": {
        "category": "skirt",
        "masterCategory": "Apparel",
        "subCategory": "Bottomwear",
        "articleType": "Skirts",
    },
    "t-shirt": {
        "category": "top",
        "masterCategory": "Apparel",
        "subCategory": "Topwear",
        "articleType": "Tshirts",
    },
}

_TOPWEAR = {"masterCategory": "Apparel", "subCategory": "Topwear"}
_BOTTOMWEAR = {"masterCategory": "Apparel", "subCategory": "Bottomwear"}
_SHOES = {"category": "footwear", "clothing": "shoes", "masterCategory": "Footwear"}

# --- Clothing Co-Parsing pixel label -> the heads' labels its garment regions get. Labels not
# listed (skin, hair, background, jewellery, belts, socks, tights, underwear, glasses, ...) make
# no training crop: the tagger only classifies what the detector finds (GARMENT_CATEGORIES).
# The category column agrees with the detector's CCP mapping (models/detection/ccp.py).
CCP_TO_HEADS: Mapping[str, Mapping[str, str]] = {
    "blouse": {"category": "top", **_TOPWEAR, "articleType": "Tops"},
    "shirt": {"category": "top", "clothing": "shirt", **_TOPWEAR, "articleType": "Shirts"},
    "t-shirt": {"category": "top", "clothing": "t-shirt", **_TOPWEAR, "articleType": "Tshirts"},
    "top": {"category": "top", **_TOPWEAR, "articleType": "Tops"},
    "sweater": {
        "category": "top",
        "clothing": "longsleeve",
        **_TOPWEAR,
        "articleType": "Sweaters",
    },
    "jumper": {"category": "top", "clothing": "longsleeve", **_TOPWEAR, "articleType": "Sweaters"},
    "sweatshirt": {
        "category": "top",
        "clothing": "longsleeve",
        **_TOPWEAR,
        "articleType": "Sweatshirts",
    },
    "hoodie": {"category": "top", "clothing": "longsleeve", **_TOPWEAR},
    "blazer": {"category": "outerwear", "clothing": "outwear", **_TOPWEAR},
    "coat": {"category": "outerwear", "clothing": "outwear", **_TOPWEAR},
    "jacket": {
        "category": "outerwear",
        "clothing": "outwear",
        **_TOPWEAR,
        "articleType": "Jackets",
    },
    "suit": {"category": "outerwear", "clothing": "outwear", **_TOPWEAR},
    "cape": {"category": "outerwear", **_TOPWEAR},
    "cardigan": {"category": "outerwear", **_TOPWEAR},
    "dress": {
        "category": "dress",
        "clothing": "dress",
        "masterCategory": "Apparel",
        "subCategory": "Dress",
        "articleType": "Dresses",
    },
    "romper": {"category": "dress", "masterCategory": "Apparel"},
    "skirt": {"category": "skirt", "clothing": "skirt", **_BOTTOMWEAR, "articleType": "Skirts"},
    "shorts": {"category": "shorts", "clothing": "shorts", **_BOTTOMWEAR, "articleType": "Shorts"},
    "pants": {
        "category": "trousers",
        "clothing": "pants",
        **_BOTTOMWEAR,
        "articleType": "Trousers",
    },
    "jeans": {"category": "trousers", "clothing": "pants", **_BOTTOMWEAR, "articleType": "Jeans"},
    "leggings": {
        "category": "trousers",
        "clothing": "pants",
        **_BOTTOMWEAR,
        "articleType": "Leggings",
    },
    "boots": {**_SHOES, "subCategory": "Shoes"},
    "clogs": {**_SHOES},
    "loafers": {**_SHOES, "subCategory": "Shoes"},
    "shoes": {**_SHOES, "subCategory": "Shoes"},
    "sneakers": {**_SHOES, "subCategory": "Shoes"},
    "flats": {**_SHOES, "subCategory": "Shoes", "articleType": "Flats"},
    "heels": {**_SHOES, "subCategory": "Shoes", "articleType": "Heels"},
    "pumps": {**_SHOES, "subCategory": "Shoes", "articleType": "Heels"},
    "wedges": {**_SHOES, "subCategory": "Shoes", "articleType": "Heels"},
    "sandals": {**_SHOES},
    "bag": {"category": "bag", "masterCategory": "Accessories", "subCategory": "Bags"},
    "purse": {"category": "bag", "masterCategory": "Accessories", "subCategory": "Bags"},
    "hat": {
        "category": "hat",
        "clothing": "hat",
        "masterCategory": "Accessories",
        "subCategory": "Headwear",
    },
}

# CCP labels whose meaning depends on the photo (as the detector's mapping decides them): "vest" is
# a waistcoat over a top or dress, else a tank top; "bodysuit" is a top when the photo has separate
# bottoms, else a one-piece (dress).
CCP_VEST_OVER = {"category": "outerwear", **_TOPWEAR}
CCP_VEST_ALONE = {"category": "top", **_TOPWEAR}
CCP_BODYSUIT_TOP = {"category": "top", **_TOPWEAR}
CCP_BODYSUIT_ONE_PIECE = {"category": "dress", "masterCategory": "Apparel"}


def ccp_heads(label: str, labels_in_photo: frozenset[str]) -> Mapping[str, str] | None:
    """The head labels a CCP region of `label` gets, given every label present in its photo;
    None when the label makes no training crop."""
    if label == "vest":
        over = any(
            CCP_TO_HEADS.get(n, {}).get("category") in ("top", "dress") for n in labels_in_photo
        )
        return CCP_VEST_OVER if over else CCP_VEST_ALONE
    if label == "bodysuit":
        bottoms = ("trousers", "skirt", "shorts")
        separate = any(CCP_TO_HEADS.get(n, {}).get("category") in bottoms for n in labels_in_photo)
        return CCP_BODYSUIT_TOP if separate else CCP_BODYSUIT_ONE_PIECE
    return CCP_TO_HEADS.get(label)


def catalogue_heads(row: Mapping[str, str]) -> dict[str, str]:
    """One styles.csv row -> head labels (missing cells left out), with category and clothing
    derived from articleType."""
    labels = {h: row[h].strip() for h in CATALOGUE_HEADS if row.get(h, "").strip() not in MISSING}
    article = labels.get("articleType", "")
    if article in ARTICLE_TO_CATEGORY:
        labels["category"] = ARTICLE_TO_CATEGORY[article]
    if article in ARTICLE_TO_CLOTHING:
        labels["clothing"] = ARTICLE_TO_CLOTHING[article]
    if labels.get("usage") not in STYLE_LABELS:
        labels.pop("usage", None)  # "Home" and unknown styles are not in the style vocabulary
    return labels


def clothing_folder_heads(folder: str) -> dict[str, str]:
    """A clothing-small class folder -> head labels."""
    if folder not in CLOTHING_TO_HEADS:
        raise ValueError(
            f"{folder!r} is not a clothing-small class ({', '.join(CLOTHING_CLASSES)})"
        )
    return {"clothing": folder, **CLOTHING_TO_HEADS[folder]}


def fixed_vocabulary(head: str) -> tuple[str, ...] | None:
    """Heads whose labels are fixed in code (the rest are counted from the training data)."""
    return {
        "category": GARMENT_CATEGORIES,
        "clothing": CLOTHING_CLASSES,
        "usage": STYLE_LABELS,
    }.get(head)
