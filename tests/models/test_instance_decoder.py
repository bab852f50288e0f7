"""The instance decoder: shapes, determinism, an untrained decoder's place in the shared space, and its file."""

from __future__ import annotations

import pytest
import torch

from modalens.errors import InvalidInputError
from modalens.models import DEFAULT_MODEL, ProjectionHead
from modalens.models.instance_decoder import InstanceDecoder, InstanceDecoderConfig, head_digest, load_decoder, save_decoder

SMALL = InstanceDecoderConfig(queries=4, width=32, layers=2, heads=4, feature_dim=24, cells=9, embed_dim=16)


def _head(seed: int = 0) -> ProjectionHead:
    torch.manual_seed(seed)
    return ProjectionHead(SMALL.feature_dim, SMALL.embed_dim, "linear").eval()


def _grid(batch: int = 3) -> torch.Tensor:
    return torch.rand(batch, SMALL.cells, SMALL.feature_dim, generator=torch.Generator().manual_seed(1)).half()


def test_shapes_unit_embeddings_and_attention_that_sums_to_one():
    torch.manual_seed(0)
    out = InstanceDecoder(SMALL).eval()(_grid(), _head())
    assert out.embeddings.shape == (3, 4, 16) and out.objectness.shape == (3, 4) and out.attention.shape == (3, 4, 9)
    assert torch.allclose(out.embeddings.norm(dim=-1), torch.ones(3, 4), atol=1e-5)
    assert torch.allclose(out.attention.sum(dim=-1), torch.ones(3, 4), atol=1e-5)


def test_same_weights_same_outputs_and_each_photo_decoded_alone():
    torch.manual_seed(0)
    decoder = InstanceDecoder(SMALL).eval()
    head, grid = _head(), _grid()
    together = decoder(grid, head).embeddings
    alone = torch.cat([decoder(grid[i : i + 1], head).embeddings for i in range(3)])
    assert torch.allclose(together, alone, atol=1e-5)
    assert torch.equal(decoder(grid, head).embeddings, together)


def test_an_untrained_decoder_starts_at_the_head_of_an_attention_pooled_map():
    """The correction starts at zero: each instance is the frozen head on its query's weighted average of the map."""
    torch.manual_seed(0)
    out = InstanceDecoder(SMALL).eval()(_grid(), _head())
    pooled = out.attention @ _grid().float()
    assert torch.allclose(out.embeddings, _head()(pooled), atol=1e-5)


def test_a_map_of_the_wrong_shape_is_refused_by_name():
    with pytest.raises(InvalidInputError, match="feature maps"):
        InstanceDecoder(SMALL)(torch.zeros(2, 7, SMALL.feature_dim), _head())


def test_file_round_trip_and_a_decoder_refuses_another_head(tmp_path):
    torch.manual_seed(0)
    decoder = InstanceDecoder(SMALL).eval()
    path = save_decoder(decoder, tmp_path / "instances.safetensors", head_digest(_head()), {"best_epoch": 3})
    loaded, metadata = load_decoder(path, head_digest(_head()))
    assert loaded.config == SMALL and metadata["best_epoch"] == "3"
    assert all(v.dtype == torch.float32 for v in loaded.state_dict().values())  # stored in float16, used in float32
    assert torch.allclose(loaded(_grid(), _head()).embeddings, decoder(_grid(), _head()).embeddings, atol=5e-3)
    with pytest.raises(InvalidInputError, match="another model's image head"):
        load_decoder(path, head_digest(_head(seed=1)))


def test_unknown_decoder_settings_are_named():
    with pytest.raises(InvalidInputError, match="querys"):
        InstanceDecoderConfig.from_dict({"querys": 5})


@pytest.mark.parametrize("name", [DEFAULT_MODEL, "modalens-photo"])
def test_the_default_model_ships_a_decoder_trained_on_its_own_image_head(name):
    from modalens.instances import InstanceEncoder
    from modalens.models.instance_decoder import decoder_path

    path = decoder_path(name)
    assert path.stat().st_size < 10 * 2**20
    encoder = InstanceEncoder.for_model(name)  # the head digest is checked here
    assert encoder.decoder.config.queries == 5 and encoder.decoder.config.cells == 49
