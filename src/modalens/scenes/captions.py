"""Grounded captions: each attribute bound to its garment, each garment to its place in the picture.

"navy blue striped shirt above blue jeans, brown belt on the left" says which
colour goes with which garment and where each one is, which a bag of words
("navy, blue, brown, shirt, jeans, belt") cannot. Captions are built from the
products' fields, their titles (a pattern word when there is no pattern field)
and the scene's layout, through templates kept as data
(``caption_sets/scenes/grounded.yaml``, or a user's file of the same shape).

A user with a local captioning model plugs it in as a *captioner*: any callable
``(scene, count) -> list[str]`` registered by name (:func:`register_captioner`)
or passed directly; ``scene.render()`` gives it the pixels.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import string
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Protocol, Sequence

import yaml

from ..catalog.schema import Product
from ..prompts import CAPTION_SET_DIR, CaptionSetError, check_template, product_fields

if TYPE_CHECKING:
    from .generator import Scene

SCENE_CAPTION_DIR = CAPTION_SET_DIR / "scenes"


@dataclass(frozen=True)
class Garment:
    """One product as captions name it: its type said as one garment, and the attributes bound to it."""

    article: str
    colour: str = ""
    pattern: str = ""
    usage: str = ""
    title: str = ""

    def phrase(self, template: str = "{colour} {pattern} {article}") -> str:
        """The garment named through ``template``; fields it lacks are left out ("blue jeans", not "blue  jeans")."""
        return " ".join(template.format(**dataclasses.asdict(self)).split())

    def replace(self, **changes: str) -> "Garment":
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class SceneCaptionSet:
    """Caption templates and wordings for scenes and single products (see ``grounded.yaml`` for the fields)."""

    name: str
    garment: tuple[str, ...]
    single: dict[str, str]
    scene: dict[str, str]
    relations: dict[str, tuple[str, ...]]
    positions: dict[str, tuple[str, ...]]
    singular: dict[str, str]
    colours: dict[str, str]
    patterns: dict[str, tuple[str, ...]]

    def relation_words(self, relation: str, pick: int = 0) -> str:
        words = self.relations.get(relation) or (relation,)
        return words[pick % len(words)]

    def position_words(self, position: str, pick: int = 0) -> str:
        words = self.positions.get(position) or (position,)
        return words[pick % len(words)]

    def scene_caption(self, template: str, a: str, relation: str, b: str, rest: Sequence[str] = ()) -> str:
        """``template`` filled with the anchor pair ``a`` ``relation`` ``b`` and the other garments' clauses."""
        tail = "".join(f", {clause}" for clause in rest)
        return " ".join(template.format(a=a, relation=relation, b=b, rest=tail).split())


def _words(path: Path, key: str, table: object) -> dict[str, tuple[str, ...]]:
    if not isinstance(table, dict):
        raise CaptionSetError(f"{path}: {key} must map a name to a list of wordings")
    return {str(k).lower(): tuple(str(w) for w in (v if isinstance(v, list) else [v])) for k, v in table.items()}


@lru_cache(maxsize=8)
def load_scene_captions(name_or_path: str = "grounded") -> SceneCaptionSet:
    """A shipped scene caption set by name (``grounded``) or a YAML file of the same shape."""
    path = Path(name_or_path)
    if not path.suffix:
        path = SCENE_CAPTION_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in SCENE_CAPTION_DIR.glob("*.yaml")))
        raise CaptionSetError(f"scene caption set {name_or_path!r}: no such file, and not one of {known}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise CaptionSetError(f"{path}: cannot parse scene caption set: {e}") from None
    if not isinstance(data, dict):
        raise CaptionSetError(f"{path}: a scene caption set is a mapping (garment, single, scene, relations, ...)")
    garment_templates = data.get("garment")
    if not isinstance(garment_templates, list) or not garment_templates:
        raise CaptionSetError(f"{path}: needs 'garment', a list of garment phrase templates")
    for key, allowed in (("single", {"g", "usage", "title"}), ("scene", {"a", "relation", "b", "rest"})):
        if not isinstance(data.get(key), dict) or not data[key]:
            raise CaptionSetError(f"{path}: needs '{key}', a mapping of name -> template text")
        for name, template in data[key].items():
            _check_fields(path, f"{key}.{name}", str(template), allowed)
    for i, template in enumerate(garment_templates):
        _check_fields(path, f"garment[{i}]", str(template), {f.name for f in dataclasses.fields(Garment)})
    return SceneCaptionSet(
        name=path.stem,
        garment=tuple(str(t) for t in garment_templates),
        single={str(k): str(v) for k, v in data["single"].items()},
        scene={str(k): str(v) for k, v in data["scene"].items()},
        relations=_words(path, "relations", data.get("relations") or {}),
        positions=_words(path, "positions", data.get("positions") or {}),
        singular={str(k).lower(): str(v) for k, v in (data.get("singular") or {}).items()},
        colours={str(k).lower(): str(v or "") for k, v in (data.get("colours") or {}).items()},
        patterns=_words(path, "patterns", data.get("patterns") or {}),
    )


def _check_fields(path: Path, name: str, template: str, allowed: set[str]) -> None:
    check_template(path, name, template)
    unknown = {f for _, f, _, _ in string.Formatter().parse(template) if f} - allowed
    if unknown:
        raise CaptionSetError(f"{path}: template {name!r} names {sorted(unknown)}; it may name {sorted(allowed)}")


def title_pattern(title: str, captions: SceneCaptionSet) -> str:
    """The pattern a title's words name ("Roadster Men Striped Shirt" → "striped"), or ''."""
    words = set(re.findall(r"[a-z]+", title.lower()))
    for pattern, said in captions.patterns.items():
        if words & set(said):
            return pattern
    return ""


def garment(product: Product, captions: SceneCaptionSet | None = None) -> Garment:
    """How captions name ``product``: its type in the singular, with its colour, pattern and usage."""
    captions = captions or load_scene_captions()
    fields = product_fields(product)  # readable values ("Tshirts" → "t-shirt"), missing ones left out
    kind = fields.get("article_type") or fields.get("category") or fields.get("sub_category") or "product"
    colour = fields.get("colour", "")
    return Garment(
        article=captions.singular.get(kind, kind),
        colour=captions.colours.get(colour, colour),
        pattern=fields.get("pattern", "").lower() or title_pattern(product.title, captions),
        usage=fields.get("usage", "").lower(),
        title=product.title.strip(),
    )


# ---------------------------------------------------------------- captioners


class Captioner(Protocol):
    """Anything that captions a scene: ``(scene, count) -> captions`` (``count`` None: as many as it likes)."""

    def __call__(self, scene: "Scene", count: int | None) -> list[str]: ...


_CAPTIONERS: dict[str, Captioner] = {}


def register_captioner(name: str, captioner: Captioner | None = None) -> Callable:
    """Register ``captioner`` under ``name`` (or use as a decorator: ``@register_captioner("my-vlm")``)."""

    def add(fn: Captioner) -> Captioner:
        _CAPTIONERS[name] = fn
        return fn

    return add(captioner) if captioner is not None else add


def get_captioner(captioner: str | Captioner) -> Captioner:
    """A captioner by registered name, or the callable itself."""
    if callable(captioner):
        return captioner
    if captioner not in _CAPTIONERS:
        raise CaptionSetError(f"unknown captioner {captioner!r}; registered: {', '.join(sorted(_CAPTIONERS))}")
    return _CAPTIONERS[captioner]


def _pick(scene_key: str, variant: int | str, what: str) -> int:
    """A fixed draw per scene, caption and choice: the same captions every time, varied across scenes."""
    return int.from_bytes(hashlib.blake2b(f"{scene_key}|{variant}|{what}".encode(), digest_size=4).digest(), "little")


def grounded_captions(scene: "Scene", count: int | None = None, captions: SceneCaptionSet | None = None) -> list[str]:
    """Captions from the products' fields and the layout: caption 0 in the canonical wording, the rest varied.

    Each caption anchors on a pair of garments with a clear relation
    ("X above Y"), then places every other garment (in the picture, "Z on the
    left", or from the anchor, "Z to the left of X").
    """
    captions = captions or load_scene_captions()
    if len(scene.products) == 1:
        return product_captions(scene.products[0], count=count, captions=captions)
    garments = [garment(p, captions) for p in scene.products]
    n = len(garments)
    pairs = [(i, j) for i in range(n) for j in range(n) if i < j and scene.relation(i, j)] or [(0, 1)]
    templates = list(captions.scene.values())
    out: list[str] = []
    for v in range(count if count is not None else len(templates)):
        # a draw that repeats an earlier caption is redrawn (a few times, then kept): captions are distinct
        # whenever the scene's wordings allow, whatever the scene's key happens to draw
        for attempt in range(_REDRAWS):
            caption = _scene_caption(scene, captions, garments, pairs, templates, v, attempt)
            if caption not in out:
                break
        out.append(caption)
    return out


#: How often a scene caption that repeats an earlier one is drawn again.
_REDRAWS = 8


def _scene_caption(
    scene: "Scene", captions: SceneCaptionSet, garments: list, pairs: list[tuple[int, int]], templates: list[str], v: int, attempt: int
) -> str:
    """Caption ``v`` of a scene (0: the canonical wording); ``attempt`` > 0 redraws it."""
    variant = v if attempt == 0 else f"{v}.{attempt}"
    pick = (lambda what: 0) if v == 0 and attempt == 0 else (lambda what: _pick(scene.key, variant, what))
    n = len(garments)
    names = [g.phrase(captions.garment[pick(f"garment{k}") % len(captions.garment)]) for k, g in enumerate(garments)]
    i, j = pairs[(v + pick("pair")) % len(pairs)]
    relation = captions.relation_words(scene.relation(i, j) or "near", pick("relation"))
    rest = []
    for k in (k for k in range(n) if k not in (i, j)):
        where = scene.position(k)
        if where is not None:
            rest.append(f"{names[k]} {captions.position_words(where, pick(f'position{k}'))}")
        else:
            rest.append(f"{names[k]} {captions.relation_words(scene.relation(k, i) or 'near', pick(f'rel{k}'))} {names[i]}")
    template = templates[(v + pick("template")) % len(templates)]
    return captions.scene_caption(template, names[i], relation, names[j], rest)


def product_captions(
    product: Product, captioner: str | Captioner = "grounded", count: int | None = None, captions: SceneCaptionSet | None = None
) -> list[str]:
    """Captions of one product alone: the garment phrase in the single templates (or a captioner's, given the
    product as a one-product scene)."""
    if captioner != "grounded":
        from .generator import arrange
        from .layouts import Slot

        scene = arrange([product], [Slot(0.5, 0.5, 0.9, 0.9)], 0, kind="collage")
        return get_captioner(captioner)(scene, count)
    captions = captions or load_scene_captions()
    item = garment(product, captions)
    out = []
    templates = list(captions.single.values())
    for v in range(count if count is not None else len(templates)):
        g = item.phrase(captions.garment[0 if v == 0 else _pick(product.id, v, "garment") % len(captions.garment)])
        fields = {"g": g, "usage": item.usage, "title": item.title}
        template = templates[v % len(templates)]
        needed = {f for _, f, _, _ in string.Formatter().parse(template) if f}
        if all(fields[f] for f in needed):
            out.append(" ".join(template.format(**fields).split()))
    return out


def scene_captions(scene: "Scene", captioner: str | Captioner = "grounded", count: int | None = None) -> list[str]:
    """A scene's captions from ``captioner`` (default: the grounded templates)."""
    return list(get_captioner(captioner)(scene, count))


register_captioner("grounded", grounded_captions)
