"""CLIP towers from local checkpoints: Hugging Face CLIP folders and open_clip state dicts, on tiny models made here.

open_clip itself cannot be imported here (it needs torchvision), so the
open_clip checkpoints are written by this file in open_clip's key layout,
and the towers are compared with a forward pass written below from open_clip's
VisionTransformer / TextTransformer math (conv1 → CLS + positions → ln_pre →
resblocks with nn.MultiheadAttention's fused in_proj → ln_post → proj; the
text side causal, pooled at argmax(token ids)). That reference never goes
through transformers, so a wrong key mapping cannot cancel itself out.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from modalens.encoders import create_image_tower, create_text_tower, list_image_towers, list_text_towers
from modalens.encoders.clip import (
    ClipCheckpointError,
    ClipImageTower,
    ClipTextTower,
    arch_from_shapes,
    open_clip_arch,
    open_clip_vision_to_hf,
    text_config_from_arch,
    vision_config_from_arch,
)

pytest.importorskip("transformers")

TOLERANCE = 1e-5
TEXTS = ["a red cotton t-shirt for men", "blue denim jeans", "", "émoji 👗 dress — 100% silk", "a", "slim fit shirt " * 9]
PHOTOS = sorted((Path(__file__).parents[1] / "fixtures" / "mini-catalog" / "images").glob("*.jpg"))[:3]

#: A tiny open_clip architecture (open_clip model_configs format): 2 vision heads of 32, 4 text heads of 16.
TINY_ARCH = {
    "name": "tiny",
    "embed_dim": 48,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 530, "width": 64, "heads": 4, "layers": 2},
}


# --- a tiny CLIP BPE tokenizer, written as vocab.json + merges.txt ------------------------------


def _byte_alphabet() -> list[str]:
    """GPT-2 / CLIP byte-level alphabet: every byte as one printable character."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = [], 0
    for b in range(256):
        if b in printable:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


MERGES = ["r e", "re d</w>", "s h", "sh i", "shi r", "shir t</w>", "d r", "dr e", "dre s", "dres s</w>", "b l", "bl u", "blu e</w>"]


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory) -> Path:
    """vocab.json + merges.txt in CLIP's format; <|endoftext|> has the largest id, as in CLIP's 49408-token vocab."""
    folder = tmp_path_factory.mktemp("clip-tokenizer")
    alphabet = _byte_alphabet()
    tokens = alphabet + [c + "</w>" for c in alphabet] + [m.replace(" ", "") for m in MERGES]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(MERGES) + "\n")
    assert len(tokens) <= TINY_ARCH["text_cfg"]["vocab_size"]
    return folder


# --- open_clip-layout checkpoints and the reference forward ---------------------------------


def _block_state(prefix: str, width: int, mlp: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    def rand(*shape: int, scale: float = 0.2) -> torch.Tensor:
        return torch.randn(*shape, generator=generator) * scale

    return {
        f"{prefix}ln_1.weight": 1 + rand(width), f"{prefix}ln_1.bias": rand(width),
        f"{prefix}attn.in_proj_weight": rand(3 * width, width), f"{prefix}attn.in_proj_bias": rand(3 * width),
        f"{prefix}attn.out_proj.weight": rand(width, width), f"{prefix}attn.out_proj.bias": rand(width),
        f"{prefix}ln_2.weight": 1 + rand(width), f"{prefix}ln_2.bias": rand(width),
        f"{prefix}mlp.c_fc.weight": rand(mlp, width), f"{prefix}mlp.c_fc.bias": rand(mlp),
        f"{prefix}mlp.c_proj.weight": rand(width, mlp), f"{prefix}mlp.c_proj.bias": rand(width),
    }  # fmt: skip


def make_open_clip_state(arch: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights under the names and shapes open_clip's CLIP (VisionTransformer + TextTransformer) gives them."""
    g = torch.Generator().manual_seed(seed)
    v, t, embed = arch["vision_cfg"], arch["text_cfg"], arch["embed_dim"]
    vw, tw, grid = v["width"], t["width"], v["image_size"] // v["patch_size"]
    state = {
        "visual.conv1.weight": torch.randn(vw, 3, v["patch_size"], v["patch_size"], generator=g) * 0.1,
        "visual.class_embedding": torch.randn(vw, generator=g) * 0.5,
        "visual.positional_embedding": torch.randn(grid * grid + 1, vw, generator=g) * 0.5,
        "visual.ln_pre.weight": 1 + torch.randn(vw, generator=g) * 0.1, "visual.ln_pre.bias": torch.randn(vw, generator=g) * 0.1,
        "visual.ln_post.weight": 1 + torch.randn(vw, generator=g) * 0.1, "visual.ln_post.bias": torch.randn(vw, generator=g) * 0.1,
        "visual.proj": torch.randn(vw, embed, generator=g) * vw**-0.5,
        "token_embedding.weight": torch.randn(t["vocab_size"], tw, generator=g) * 0.5,
        "positional_embedding": torch.randn(t["context_length"], tw, generator=g) * 0.3,
        "ln_final.weight": 1 + torch.randn(tw, generator=g) * 0.1, "ln_final.bias": torch.randn(tw, generator=g) * 0.1,
        "text_projection": torch.randn(tw, embed, generator=g) * tw**-0.5,
        "logit_scale": torch.tensor(4.6052),
    }  # fmt: skip
    for i in range(v["layers"]):
        state.update(_block_state(f"visual.transformer.resblocks.{i}.", vw, 4 * vw, g))
    for i in range(t["layers"]):
        state.update(_block_state(f"transformer.resblocks.{i}.", tw, 4 * tw, g))
    return state


def _reference_block(x: torch.Tensor, s: dict, p: str, heads: int, quick_gelu: bool, mask: torch.Tensor | None) -> torch.Tensor:
    """open_clip ResidualAttentionBlock on (L, N, D): x + attn(ln_1(x)); x + mlp(ln_2(x))."""
    width = x.shape[-1]
    h = F.layer_norm(x, (width,), s[p + "ln_1.weight"], s[p + "ln_1.bias"])
    attended, _ = F.multi_head_attention_forward(
        h, h, h, width, heads, s[p + "attn.in_proj_weight"], s[p + "attn.in_proj_bias"], None, None, False, 0.0,
        s[p + "attn.out_proj.weight"], s[p + "attn.out_proj.bias"], training=False, need_weights=False, attn_mask=mask,
    )  # fmt: skip
    x = x + attended
    h = F.linear(F.layer_norm(x, (width,), s[p + "ln_2.weight"], s[p + "ln_2.bias"]), s[p + "mlp.c_fc.weight"], s[p + "mlp.c_fc.bias"])
    h = h * torch.sigmoid(1.702 * h) if quick_gelu else F.gelu(h)
    return x + F.linear(h, s[p + "mlp.c_proj.weight"], s[p + "mlp.c_proj.bias"])


def reference_image(s: dict, pixels: torch.Tensor, heads: int, quick_gelu: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """open_clip VisionTransformer.forward: (pooled @ proj, ln_post'd patch tokens)."""
    conv = s["visual.conv1.weight"]
    width, patch = conv.shape[0], conv.shape[-1]
    x = F.conv2d(pixels, conv, stride=patch).flatten(2).transpose(1, 2)
    x = torch.cat([s["visual.class_embedding"].expand(x.shape[0], 1, width), x], dim=1) + s["visual.positional_embedding"]
    x = F.layer_norm(x, (width,), s["visual.ln_pre.weight"], s["visual.ln_pre.bias"]).transpose(0, 1)
    for i in range(len({k.split(".")[3] for k in s if k.startswith("visual.transformer.resblocks.")})):
        x = _reference_block(x, s, f"visual.transformer.resblocks.{i}.", heads, quick_gelu, None)
    x = F.layer_norm(x.transpose(0, 1), (width,), s["visual.ln_post.weight"], s["visual.ln_post.bias"])
    return x[:, 0] @ s["visual.proj"], x[:, 1:]


def reference_text(s: dict, ids: torch.Tensor, heads: int, quick_gelu: bool = False) -> torch.Tensor:
    """open_clip TextTransformer.forward on ids padded with 0 to the context length: causal, pooled at argmax(ids)."""
    width = s["token_embedding.weight"].shape[1]
    length = ids.shape[1]
    x = (s["token_embedding.weight"][ids] + s["positional_embedding"][:length]).transpose(0, 1)
    mask = torch.full((length, length), float("-inf")).triu(1)
    for i in range(len({k.split(".")[2] for k in s if k.startswith("transformer.resblocks.")})):
        x = _reference_block(x, s, f"transformer.resblocks.{i}.", heads, quick_gelu, mask)
    x = F.layer_norm(x.transpose(0, 1), (width,), s["ln_final.weight"], s["ln_final.bias"])
    return x[torch.arange(len(ids)), ids.argmax(dim=-1)] @ s["text_projection"]


def open_clip_ids(tower: ClipTextTower, texts: list[str]) -> torch.Tensor:
    """The tower's BPE tokens as open_clip's tokenizer lays them out: up to EOT, then zeros to the context length."""
    ids = tower.tokenize(texts)["input_ids"]
    eot = tower.tokenizer.eos_token_id
    out = torch.zeros(len(ids), tower.transformer.config.max_position_embeddings, dtype=torch.long)
    for row, seq in enumerate(ids):
        end = int((seq == eot).nonzero()[0]) + 1
        out[row, :end] = seq[:end]
    return out


@pytest.fixture(scope="module")
def open_clip_state() -> dict[str, torch.Tensor]:
    return make_open_clip_state(TINY_ARCH)


@pytest.fixture(scope="module")
def open_clip_file(tmp_path_factory, open_clip_state, tokenizer_dir) -> Path:
    """A checkpoint as open_clip's training writes it (nested under state_dict, DDP 'module.' prefixes), tokenizer beside it."""
    folder = tmp_path_factory.mktemp("open-clip")
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(tokenizer_dir / name, folder / name)
    path = folder / "epoch_3.pt"
    wrapped = {"epoch": 3, "name": "tiny", "state_dict": {f"module.{k}": v for k, v in open_clip_state.items()}}
    torch.save(wrapped, path)
    return path


@pytest.fixture(scope="module")
def open_clip_plain(tmp_path_factory, open_clip_state) -> Path:
    """The bare state dict as safetensors (what open_clip's hub checkpoints are), no tokenizer beside it."""
    from safetensors.torch import save_file

    path = tmp_path_factory.mktemp("open-clip-plain") / "open_clip_model.safetensors"
    save_file({k: v.contiguous() for k, v in open_clip_state.items()}, str(path))
    return path


def _pixels(n: int = 3, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


# --- open_clip format ---------------------------------------------------------------------------


def test_open_clip_image_tower_equals_reference(open_clip_file, open_clip_state) -> None:
    tower = create_image_tower("clip-image", path=open_clip_file, arch=TINY_ARCH)
    pixels = _pixels()
    with torch.no_grad():
        pooled, feature_map, tokens = tower(pixels), tower.forward_features(pixels), tower.patch_tokens(pixels)
        ref_pooled, ref_tokens = reference_image(open_clip_state, pixels, heads=2)
    assert pooled.shape == (3, 48) and tower.output_dim == 48
    torch.testing.assert_close(pooled, ref_pooled, atol=TOLERANCE, rtol=0)
    torch.testing.assert_close(tokens, ref_tokens, atol=TOLERANCE, rtol=0)
    # The map: projected patch tokens, row-major over the 4×4 grid of 8 px patches.
    ref_map = (ref_tokens @ open_clip_state["visual.proj"]).transpose(1, 2).reshape(3, 48, 4, 4)
    assert feature_map.shape == (3, 48, 4, 4)
    torch.testing.assert_close(feature_map, ref_map, atol=TOLERANCE, rtol=0)


def test_open_clip_text_tower_equals_reference(open_clip_file, open_clip_state) -> None:
    tower = create_text_tower("clip-text", path=open_clip_file, arch=TINY_ARCH)  # tokenizer found beside the file
    assert tower.max_length == 16 and tower.output_dim == 48
    with torch.no_grad():
        ours = tower(TEXTS)
        ref = reference_text(open_clip_state, open_clip_ids(tower, TEXTS), heads=4)
    assert ours.shape == (len(TEXTS), 48)
    torch.testing.assert_close(ours, ref, atol=TOLERANCE, rtol=0)


def test_open_clip_without_arch_reads_the_architecture_off_the_shapes(open_clip_plain, open_clip_state, tokenizer_dir) -> None:
    """No arch: sizes from the shapes, heads from open_clip's default 64-wide heads (1 here)."""
    image = create_image_tower("clip-image", path=open_clip_plain)
    text = create_text_tower("clip-text", path=open_clip_plain, tokenizer=tokenizer_dir)
    assert (image.image_size, image.grid, image.model.config.num_attention_heads) == (32, 4, 1)
    assert text.transformer.config.vocab_size == 530 and text.transformer.config.num_attention_heads == 1
    pixels = _pixels(2)
    with torch.no_grad():
        torch.testing.assert_close(image(pixels), reference_image(open_clip_state, pixels, heads=1)[0], atol=TOLERANCE, rtol=0)
        ref_text = reference_text(open_clip_state, open_clip_ids(text, TEXTS), heads=1)
        torch.testing.assert_close(text(TEXTS), ref_text, atol=TOLERANCE, rtol=0)


def test_quick_gelu_is_an_option_and_matters(open_clip_plain, open_clip_state) -> None:
    quick = create_image_tower("clip-image", path=open_clip_plain, arch=TINY_ARCH, quick_gelu=True)
    exact = create_image_tower("clip-image", path=open_clip_plain, arch=TINY_ARCH)
    assert quick.model.config.hidden_act == "quick_gelu" and exact.model.config.hidden_act == "gelu"
    assert quick.name != exact.name  # one file, two networks: their cached features must not mix
    pixels = _pixels(2)
    with torch.no_grad():
        ref = reference_image(open_clip_state, pixels, heads=2, quick_gelu=True)[0]
        torch.testing.assert_close(quick(pixels), ref, atol=TOLERANCE, rtol=0)
        assert (exact(pixels) - ref).abs().max() > 1e-3


def test_nested_and_prefixed_checkpoint_loads_like_the_bare_one(open_clip_file, open_clip_plain) -> None:
    nested = create_image_tower("clip-image", path=open_clip_file, arch=TINY_ARCH)
    bare = create_image_tower("clip-image", path=open_clip_plain, arch=TINY_ARCH)
    pixels = _pixels(2)
    with torch.no_grad():
        torch.testing.assert_close(nested(pixels), bare(pixels), atol=0, rtol=0)
    assert nested.name != bare.name  # different files: feature caches never mix


def test_custom_text_clip_layout_loads(tmp_path, open_clip_state, tokenizer_dir) -> None:
    """open_clip's CustomTextCLIP keeps the same TextTransformer under 'text.'."""
    nested = {(k if k.startswith("visual.") or k == "logit_scale" else f"text.{k}"): v for k, v in open_clip_state.items()}
    torch.save(nested, tmp_path / "custom.pt")
    plain = create_text_tower("clip-text", path=tmp_path / "custom.pt", arch=TINY_ARCH, tokenizer=tokenizer_dir)
    with torch.no_grad():
        ref = reference_text(open_clip_state, open_clip_ids(plain, TEXTS[:3]), heads=4)
        torch.testing.assert_close(plain(TEXTS[:3]), ref, atol=TOLERANCE, rtol=0)


def test_shapes_give_back_the_architecture(open_clip_state) -> None:
    vision = arch_from_shapes(open_clip_vision_to_hf(open_clip_state), "vision_cfg")
    assert vision == {"embed_dim": 48, "vision_cfg": {"width": 64, "patch_size": 8, "image_size": 32, "layers": 2, "mlp_width": 256, "head_width": 64}}


# --- Hugging Face CLIP format -------------------------------------------------------------------


@pytest.fixture(scope="module")
def hf_clip(tmp_path_factory, tokenizer_dir):
    """A tiny random CLIPModel saved with save_pretrained, tokenizer and preprocessor config beside it."""
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizerFast

    folder = tmp_path_factory.mktemp("hf-clip")
    tokenizer = CLIPTokenizerFast.from_pretrained(str(tokenizer_dir))
    sizes = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}
    special = {"eos_token_id": tokenizer.eos_token_id, "bos_token_id": tokenizer.bos_token_id, "pad_token_id": tokenizer.pad_token_id}
    text = {**sizes, **special, "vocab_size": 530, "max_position_embeddings": 20}
    vision = {**sizes, "image_size": 32, "patch_size": 8}
    torch.manual_seed(0)
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=24)).eval()
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    (folder / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.5, 0.5, 0.5], "image_std": [0.25, 0.25, 0.25]}))
    return folder, model, tokenizer


def test_hf_image_tower_equals_get_image_features(hf_clip) -> None:
    folder, model, _ = hf_clip
    tower = create_image_tower("clip-image", path=folder)
    assert isinstance(tower, ClipImageTower) and tower.output_dim == 24 and tower.image_size == 32
    pixels = _pixels()
    with torch.no_grad():
        expected = model.get_image_features(pixel_values=pixels)
        expected = getattr(expected, "pooler_output", expected)  # transformers 5 returns an output object
        hidden = model.vision_model(pixel_values=pixels).last_hidden_state
        expected_map = model.visual_projection(model.vision_model.post_layernorm(hidden[:, 1:]))
        torch.testing.assert_close(tower(pixels), expected, atol=TOLERANCE, rtol=0)
        torch.testing.assert_close(tower.forward_features(pixels), expected_map.transpose(1, 2).reshape(3, 24, 4, 4), atol=TOLERANCE, rtol=0)


def test_hf_text_tower_equals_get_text_features(hf_clip) -> None:
    folder, model, tokenizer = hf_clip
    tower = create_text_tower("clip-text", path=folder)
    assert isinstance(tower, ClipTextTower) and tower.output_dim == 24 and tower.max_length == 20
    tokens = tokenizer(TEXTS, padding=True, truncation=True, max_length=20, return_tensors="pt")
    with torch.no_grad():
        expected = model.get_text_features(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
        expected = getattr(expected, "pooler_output", expected)
        torch.testing.assert_close(tower(TEXTS), expected, atol=TOLERANCE, rtol=0)
        alone = tower(TEXTS[1:2])  # padding in a batch changes nothing
        torch.testing.assert_close(alone, expected[1:2], atol=TOLERANCE, rtol=0)


def test_hf_preprocessing_uses_the_folders_pixel_statistics(hf_clip) -> None:
    tower = create_image_tower("clip-image", path=hf_clip[0])
    assert tower.pixel_mean == (127.5, 127.5, 127.5) and tower.pixel_std == (63.75, 63.75, 63.75)
    pixels = tower.preprocess(Image.new("RGB", (40, 20), (255, 0, 127)))
    assert pixels.shape == (3, 32, 32)
    assert pixels[:, 0, 0].tolist() == [2.0, 2.0, 2.0]  # letterbox padding is white
    assert tower.name in tower.preprocess_id


# --- random weights, architectures ------------------------------------------------------------


def test_random_init_from_an_arch(tokenizer_dir) -> None:
    image = create_image_tower("clip-image", arch=TINY_ARCH, pretrained=False)
    again = create_image_tower("clip-image", arch=TINY_ARCH, pretrained=False)
    other = create_image_tower("clip-image", arch=TINY_ARCH, pretrained=False, seed=1)
    pixels = _pixels(2)
    with torch.no_grad():
        assert image(pixels).shape == (2, 48) and image.forward_features(pixels).shape == (2, 48, 4, 4)
        torch.testing.assert_close(image(pixels), again(pixels), atol=0, rtol=0)  # seeded: reproducible
        assert (image(pixels) - other(pixels)).abs().max() > 1e-4
    assert image.name == "clip-image:tiny-random0" != other.name
    text = create_text_tower("clip-text", arch=TINY_ARCH, pretrained=False, tokenizer=tokenizer_dir)
    with torch.no_grad():
        assert text(TEXTS).shape == (len(TEXTS), 48)


def test_builtin_archs_follow_open_clips_configs() -> None:
    _, b32 = open_clip_arch("ViT-B-32")
    vision, text = vision_config_from_arch(b32), text_config_from_arch(b32)
    assert (vision.hidden_size, vision.num_hidden_layers, vision.num_attention_heads, vision.patch_size, vision.image_size) == (768, 12, 12, 32, 224)
    assert (vision.intermediate_size, vision.projection_dim, vision.hidden_act) == (3072, 512, "gelu")
    assert (text.hidden_size, text.num_attention_heads, text.max_position_embeddings, text.vocab_size, text.projection_dim) == (512, 8, 77, 49408, 512)
    assert vision_config_from_arch(open_clip_arch("ViT-H-14")[1]).num_attention_heads == 16  # head_width 80
    assert vision_config_from_arch(open_clip_arch("ViT-L-14-336")[1]).image_size == 336
    assert vision_config_from_arch(open_clip_arch("ViT-B-16-quickgelu")[1]).hidden_act == "quick_gelu"
    with pytest.raises(ClipCheckpointError, match="unknown open_clip arch"):
        open_clip_arch("RN50")


def test_arch_from_a_json_file(tmp_path) -> None:
    (tmp_path / "tiny.json").write_text(json.dumps(TINY_ARCH))
    tower = create_image_tower("clip-image", arch=str(tmp_path / "tiny.json"), pretrained=False)
    assert tower.output_dim == 48 and tower.model.config.num_attention_heads == 2


def test_incomplete_arch_names_the_missing_fields() -> None:
    with pytest.raises(ClipCheckpointError, match=r"lacks vision_cfg\.patch_size"):
        create_image_tower("clip-image", arch={"embed_dim": 8, "vision_cfg": {"width": 64, "layers": 1, "image_size": 32}}, pretrained=False)


def test_towers_are_registered() -> None:
    assert "clip-image" in list_image_towers() and "clip-text" in list_text_towers()


# --- clear errors -----------------------------------------------------------------------------


def test_missing_checkpoint(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="no CLIP checkpoint"):
        create_image_tower("clip-image", path=tmp_path / "nope.pt")


def test_no_path_needs_pretrained_false() -> None:
    with pytest.raises(ClipCheckpointError, match="pretrained=False"):
        create_image_tower("clip-image", arch="ViT-B-32")


def test_folder_without_config(tmp_path) -> None:
    with pytest.raises(ClipCheckpointError, match="no config.json"):
        create_image_tower("clip-image", path=tmp_path)


def test_not_a_clip_checkpoint(tmp_path) -> None:
    torch.save({"conv.weight": torch.zeros(2, 3, 3, 3), "fc.weight": torch.zeros(2, 2)}, tmp_path / "resnet.pt")
    with pytest.raises(ClipCheckpointError, match=r"no image tower: no 'visual\.\*' keys"):
        create_image_tower("clip-image", path=tmp_path / "resnet.pt")
    with pytest.raises(ClipCheckpointError, match="no open_clip text tower"):
        create_text_tower("clip-text", path=tmp_path / "resnet.pt")


def test_missing_keys_are_named(tmp_path, open_clip_state) -> None:
    broken = {k: v for k, v in open_clip_state.items() if k not in ("visual.ln_pre.weight", "ln_final.bias")}
    torch.save(broken, tmp_path / "broken.pt")
    with pytest.raises(ClipCheckpointError, match=r"missing visual\.ln_pre\.weight"):
        create_image_tower("clip-image", path=tmp_path / "broken.pt")
    with pytest.raises(ClipCheckpointError, match=r"missing ln_final\.bias"):
        create_text_tower("clip-text", path=tmp_path / "broken.pt", arch=TINY_ARCH)


def test_unsupported_variant_names_the_keys(tmp_path, open_clip_state) -> None:
    with_layer_scale = {**open_clip_state, "visual.transformer.resblocks.0.ls_1.gamma": torch.ones(64)}
    torch.save(with_layer_scale, tmp_path / "ls.pt")
    with pytest.raises(ClipCheckpointError, match=r"keys not understood: visual\.transformer\.resblocks\.0\.ls_1\.gamma"):
        create_image_tower("clip-image", path=tmp_path / "ls.pt")


def test_shape_mismatch_with_the_given_arch(open_clip_plain) -> None:
    with pytest.raises(ClipCheckpointError, match=r"does not fit.*shape mismatches.*\(64, 3, 8, 8\) ≠ model \(768, 3, 32, 32\)"):
        create_image_tower("clip-image", path=open_clip_plain, arch="ViT-B-32")


def test_text_tower_without_tokenizer_says_what_is_missing(open_clip_plain) -> None:
    with pytest.raises(FileNotFoundError, match=r"no tokenizer.*vocab\.json \+ merges\.txt.*tokenizer=<folder>"):
        create_text_tower("clip-text", path=open_clip_plain)


def test_hf_folder_refuses_arch(hf_clip) -> None:
    with pytest.raises(ClipCheckpointError, match="drop arch="):
        create_image_tower("clip-image", path=hf_clip[0], arch="ViT-B-32")


def test_text_longer_than_the_context_is_refused(hf_clip) -> None:
    with pytest.raises(ValueError, match="longer than the model's context"):
        create_text_tower("clip-text", path=hf_clip[0], max_length=77)


# --- through modalens: DualEncoder, back-ends ----------------------------------------------------


def test_dual_encoder_with_clip_towers(hf_clip, open_clip_file) -> None:
    from modalens.models.config import ModelConfig
    from modalens.models.dual_encoder import DualEncoder

    config = ModelConfig(
        name="clip-tiny",
        image_tower={"name": "clip-image", "path": str(open_clip_file), "arch": TINY_ARCH, "dim": 48},
        text_tower={"name": "clip-text", "path": str(hf_clip[0]), "dim": 24},
        embed_dim=16,
        backend="torch",
    )
    model = DualEncoder(config)
    images = [Image.open(p) for p in PHOTOS] or [Image.new("RGB", (50, 70), (200, 30, 30))]
    image_embeddings, text_embeddings = model.encode_image(images), model.encode_text(TEXTS[:2])
    assert image_embeddings.shape == (len(images), 16) and text_embeddings.shape == (2, 16)
    assert np.isfinite(image_embeddings).all()
    np.testing.assert_allclose(np.linalg.norm(text_embeddings, axis=1), 1.0, atol=1e-5)


def test_dual_encoder_reads_a_clip_towers_size_off_the_tower(hf_clip) -> None:
    """Without a "dim" in the spec the heads are sized by the tower itself (a checkpoint fixes it, not a table)."""
    from modalens.models.config import ModelConfig
    from modalens.models.dual_encoder import DualEncoder

    spec = {"name": "clip-image", "path": str(hf_clip[0])}
    model = DualEncoder(ModelConfig(name="clip-tiny", image_tower=spec, embed_dim=16, backend="torch"))
    assert model.image_head.linear.in_features == create_image_tower("clip-image", path=hf_clip[0]).output_dim


def test_torch_backend_builds_the_same_tower(hf_clip) -> None:
    from modalens.backends import build_image_tower, build_text_tower, tower_backend

    spec = {"name": "clip-image", "path": str(hf_clip[0]), "dim": 24}
    tower = build_image_tower(spec, backend="torch")
    direct = create_image_tower("clip-image", path=hf_clip[0])
    assert tower_backend(tower) == "torch"
    pixels = _pixels(2).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        torch.testing.assert_close(tower(pixels), direct(pixels.contiguous()), atol=TOLERANCE, rtol=0)
    text = build_text_tower({"name": "clip-text", "path": str(hf_clip[0])}, backend="torch")
    assert isinstance(text, ClipTextTower)


def test_onnx_backend_exports_and_matches_torch(hf_clip) -> None:
    """Both towers export (dynamo exporter) and agree with torch; exports are cached, so only a first run pays (~15 s)."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from modalens.backends import build_image_tower, build_text_tower, tower_backend

    folder = str(hf_clip[0])
    onnx_image = build_image_tower({"name": "clip-image", "path": folder}, backend="onnx", threads=1)
    onnx_text = build_text_tower({"name": "clip-text", "path": folder}, backend="onnx", threads=1)
    torch_image, torch_text = create_image_tower("clip-image", path=folder), create_text_tower("clip-text", path=folder)
    assert tower_backend(onnx_image) == tower_backend(onnx_text) == "onnx"
    assert onnx_image.preprocess_id == torch_image.preprocess_id and onnx_text.name == torch_text.name
    pixels = _pixels(3, seed=5)
    with torch.no_grad():
        torch.testing.assert_close(onnx_image(pixels), torch_image(pixels), atol=1e-4, rtol=0)
        torch.testing.assert_close(onnx_image.forward_features(pixels), torch_image.forward_features(pixels), atol=1e-4, rtol=0)
        torch.testing.assert_close(onnx_text(TEXTS), torch_text(TEXTS), atol=1e-4, rtol=0)
