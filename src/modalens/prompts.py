"""Captions from product fields, and prompt ensembles for zero-shot tagging (OpenFashionCLIP's prompt engineering).

Training captions are built from a product's own title and attributes through
templates; a template is skipped for a product that lacks one of its fields,
so no caption ever says "a photo of a  for ". Zero-shot prompts wrap a label
in several templates whose text embeddings are averaged.
"""

from __future__ import annotations

import string
from typing import Sequence

from .catalog.schema import Product

#: Training caption templates: fields are a product's attributes (plus title/description).
CAPTION_TEMPLATES: dict[str, str] = {
    "title": "{title}",
    "type_colour_gender": "a photo of a {colour} {article_type} for {gender}",
    "colour_type": "{colour} {article_type}",
    "title_usage_season": "{title}, {usage} wear for {season}",
    "full": "a {usage} {colour} {article_type} for {gender}, {season} {year}",
}

#: One text per product field, for the multi-field loss (Marqo GCL style): each field its own contrastive term.
FIELD_TEMPLATES: dict[str, str] = {
    "title": "{title}",
    "colour": "{colour}",
    "category": "a photo of {article_type}",
    "gender": "fashion for {gender}",
    "usage": "{usage} wear for {season}",
}

#: Zero-shot prompt ensemble; the first one alone is the "no ensemble" baseline.
ZERO_SHOT_TEMPLATES: tuple[str, ...] = (
    "a photo of {label}",
    "a product photo of {label}",
    "{label}",
    "a photo of {label}, a type of fashion product",
    "an e-commerce catalogue photo of {label} on a white background",
    "a close-up photo of {label}",
    "a photo of a {label} for men or women",
)

# Catalogue labels that read badly in a sentence ("Tshirts"), mapped to plain words.
_READABLE = {
    "tshirts": "t-shirt",
    "t-shirt/top": "t-shirt or top",
    "innerwear vests": "innerwear vest",
    "perfume and body mist": "perfume and body mist",
    "accessory gift set": "accessory gift set",
    "necklace and chains": "necklace and chain",
}


def readable(label: str) -> str:
    """A catalogue label as words a text encoder reads naturally ("Tshirts" → "t-shirt")."""
    text = " ".join(str(label).replace("_", " ").split()).lower()
    return _READABLE.get(text, text)


def _fields(template: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


def product_fields(product: Product) -> dict[str, str]:
    fields = {k: readable(v) for k, v in product.attributes.items()}
    fields["title"] = product.title.strip()
    fields["description"] = product.description.strip()
    return {k: v for k, v in fields.items() if v and v.lower() not in ("na", "nan", "none")}


def caption(product: Product, template: str) -> str | None:
    """Fill one template from a product, or None when the product lacks a field it needs."""
    fields = product_fields(product)
    if any(name not in fields for name in _fields(template)):
        return None
    return " ".join(template.format(**fields).split())


def captions(product: Product, templates: dict[str, str] | None = None) -> dict[str, str]:
    """Every caption the templates can build for this product, by template name."""
    built = {name: caption(product, t) for name, t in (templates or CAPTION_TEMPLATES).items()}
    return {name: text for name, text in built.items() if text}


def zero_shot_prompts(labels: Sequence[str], templates: Sequence[str] = ZERO_SHOT_TEMPLATES) -> list[list[str]]:
    """For each label, its prompts (one per template)."""
    return [[t.format(label=readable(label)) for t in templates] for label in labels]
