"""Which part of an outfit a product is: the role decides where a flat-lay puts it.

A flat-lay reads like a person: topwear above bottomwear, shoes at the bottom,
accessories at the side. The role comes from the catalogue's own taxonomy
(``sub_category``, then ``master_category``, then words of ``article_type``),
so any catalogue with one of those fields lays out; a product none of them
places is ``other`` and goes only into collages.
"""

from __future__ import annotations

import re

from ..catalog.schema import Product

#: The roles, in the order an outfit is read from top to bottom (accessories at the side).
ROLES = ("dress", "topwear", "bottomwear", "footwear", "accessory", "other")

#: ``sub_category`` (lower case) → role.
SUB_CATEGORY_ROLES: dict[str, str] = {
    "topwear": "topwear",
    "bottomwear": "bottomwear",
    "dress": "dress",
    "saree": "dress",
    "apparel set": "dress",
    "shoes": "footwear",
    "sandal": "footwear",
    "flip flops": "footwear",
    "bags": "accessory",
    "watches": "accessory",
    "eyewear": "accessory",
    "belts": "accessory",
    "wallets": "accessory",
    "headwear": "accessory",
    "ties": "accessory",
    "jewellery": "accessory",
    "scarves": "accessory",
    "mufflers": "accessory",
    "stoles": "accessory",
    "gloves": "accessory",
    "cufflinks": "accessory",
    "socks": "accessory",
}

#: ``master_category`` (lower case) → role, when the sub-category says nothing.
MASTER_CATEGORY_ROLES: dict[str, str] = {"footwear": "footwear", "accessories": "accessory"}

#: Word starts in an ``article_type`` → role, for catalogues with only a type (checked in this order;
#: "top" matches "tops", not "laptop").
TYPE_WORD_ROLES: tuple[tuple[str, str], ...] = (
    ("dress", "dress"), ("jumpsuit", "dress"), ("saree", "dress"),
    ("shirt", "topwear"), ("tshirt", "topwear"), ("t-shirt", "topwear"), ("sweatshirt", "topwear"), ("top", "topwear"), ("tee", "topwear"), ("blouse", "topwear"), ("sweater", "topwear"),
    ("jacket", "topwear"), ("coat", "topwear"), ("kurta", "topwear"), ("hoodie", "topwear"),
    ("jeans", "bottomwear"), ("trouser", "bottomwear"), ("pants", "bottomwear"), ("shorts", "bottomwear"),
    ("skirt", "bottomwear"), ("leggings", "bottomwear"), ("capris", "bottomwear"),
    ("shoe", "footwear"), ("sneaker", "footwear"), ("boot", "footwear"), ("sandal", "footwear"), ("heels", "footwear"),
    ("flats", "footwear"), ("flip flop", "footwear"), ("slipper", "footwear"),
    ("bag", "accessory"), ("watch", "accessory"), ("belt", "accessory"), ("wallet", "accessory"), ("cap", "accessory"),
    ("hat", "accessory"), ("sunglasses", "accessory"), ("tie", "accessory"), ("scarf", "accessory"),
    ("earring", "accessory"), ("necklace", "accessory"), ("bracelet", "accessory"), ("clutch", "accessory"),
)  # fmt: skip


def product_role(product: Product) -> str:
    """The product's role in an outfit (one of :data:`ROLES`)."""
    sub = product.get("sub_category").lower()
    if sub in SUB_CATEGORY_ROLES:
        return SUB_CATEGORY_ROLES[sub]
    master = product.get("master_category").lower()
    if master in MASTER_CATEGORY_ROLES:
        return MASTER_CATEGORY_ROLES[master]
    kind = product.get("article_type").lower()
    for word, role in TYPE_WORD_ROLES:
        if re.search(rf"\b{re.escape(word)}", kind):
            return role
    return "other"
