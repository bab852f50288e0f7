"""Captions from product fields, and prompt ensembles for zero-shot tagging (OpenFashionCLIP's prompt engineering).

Training captions are built from a product's own title and attributes through
templates; a template is skipped for a product that lacks one of its fields,
so no caption ever says "a photo of a  for ". Templates come in caption sets,
data files in ``caption_sets/`` (or a user's own YAML), with optional synonyms
per field value. Zero-shot prompts wrap a label in several templates whose
text embeddings are averaged.
"""

from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import yaml

from .catalog.schema import Product
from .paths import PACKAGE_DIR

CAPTION_SET_DIR = PACKAGE_DIR / "caption_sets"


class CaptionSetError(ValueError):
    pass


@dataclass(frozen=True)
class CaptionSet:
    """Named caption templates over product fields, and the wordings a field value is said in (one drawn per product)."""

    name: str
    templates: dict[str, str]
    synonyms: dict[str, dict[str, tuple[str, ...]]] = field(default_factory=dict)  # field -> value -> wordings used instead
    #: How often training draws each template relative to the others (1 when not given): a whole number,
    #: so a product's caption list simply holds a template's caption that many times.
    weights: dict[str, int] = field(default_factory=dict)

    def select(self, names: Sequence[str]) -> "CaptionSet":
        """The same set with only the named templates (all of them when ``names`` is empty)."""
        unknown = set(names) - set(self.templates)
        if unknown:
            raise CaptionSetError(f"unknown caption templates {sorted(unknown)} in set {self.name!r}; known: {sorted(self.templates)}")
        chosen = {n: self.templates[n] for n in names} if names else dict(self.templates)
        return CaptionSet(self.name, chosen, self.synonyms, {n: w for n, w in self.weights.items() if n in chosen})

    def captions(self, product: Product) -> dict[str, str]:
        """One caption per template the product has every field for; synonyms drawn per product and template."""
        fields = product_fields(product)
        out = {}
        for name, template in self.templates.items():
            needed = _fields(template)
            if any(f not in fields for f in needed):
                continue
            worded = {f: self._wording(f, fields[f], f"{product.id}|{name}") for f in needed}
            out[name] = " ".join(template.format(**worded).split())
        return out

    def _wording(self, field_name: str, value: str, salt: str) -> str:
        wordings = self.synonyms.get(field_name, {}).get(value.lower())
        if not wordings:
            return value
        pick = int.from_bytes(hashlib.blake2b(f"{salt}|{field_name}".encode(), digest_size=4).digest(), "little")
        return wordings[pick % len(wordings)]


def check_template(path: Path | str, name: str, template: str) -> None:
    """A template names product fields as plain ``{field}``: anything else would fail, or build no caption, mid-training."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as e:
        raise CaptionSetError(f"{path}: template {name!r} is malformed ({e})") from None
    for _, field_name, spec, conversion in parts:
        if field_name is None:
            continue
        if not field_name.isidentifier() or spec or conversion:
            raise CaptionSetError(f"{path}: template {name!r} may only name fields as {{field}}, not {{{field_name}{'!' + conversion if conversion else ''}{':' + spec if spec else ''}}}")


def caption_set_names() -> list[str]:
    return sorted(p.stem for p in CAPTION_SET_DIR.glob("*.yaml"))


@lru_cache(maxsize=16)
def load_caption_set(name_or_path: str) -> CaptionSet:
    """A shipped caption set by name (``basic``, ``rich``) or a YAML file of the same shape."""
    path = Path(name_or_path)
    if not path.suffix:
        path = CAPTION_SET_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise CaptionSetError(f"caption set {name_or_path!r}: no such file, and not one of {', '.join(caption_set_names())}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise CaptionSetError(f"{path}: cannot parse caption set: {e}") from None
    templates = data.get("templates") if isinstance(data, dict) else None
    if not isinstance(templates, dict) or not templates:
        raise CaptionSetError(f"{path}: needs 'templates', a mapping of name -> template text (or {{template: ..., weight: N}})")
    weights = {}
    for name, entry in list(templates.items()):
        if isinstance(entry, dict) and isinstance(entry.get("template"), str):
            weight = entry.get("weight", 1)
            if not isinstance(weight, int) or isinstance(weight, bool) or weight < 1:
                raise CaptionSetError(f"{path}: templates.{name}.weight must be a whole number from 1, not {weight!r}")
            templates[name], weights[str(name)] = entry["template"], weight
        elif not isinstance(entry, str):
            raise CaptionSetError(f"{path}: templates.{name} must be template text or {{template: ..., weight: N}}")
    for name, template in templates.items():
        check_template(path, str(name), template)
    synonyms = {}
    if not isinstance(data.get("synonyms") or {}, dict):
        raise CaptionSetError(f"{path}: synonyms must map a field to {{value: [wordings]}}")
    for field_name, table in (data.get("synonyms") or {}).items():
        if not isinstance(table, dict):
            raise CaptionSetError(f"{path}: synonyms.{field_name} must map a value to a list of wordings")
        synonyms[field_name] = {str(k).lower(): tuple(str(w) for w in (v if isinstance(v, list) else [v])) for k, v in table.items()}
    return CaptionSet(path.stem, {str(k): v for k, v in templates.items()}, synonyms, weights)


#: The ``basic`` set's templates (modalens-lite's captions); fields are a product's attributes plus title/description.
CAPTION_TEMPLATES: dict[str, str] = load_caption_set("basic").templates

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
