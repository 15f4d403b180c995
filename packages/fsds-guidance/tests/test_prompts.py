"""View suffixes and the prompt-embedding cache."""

import pytest
import torch
from fsds_guidance import FSDS, FSDSConfig
from fsds_guidance.prompts import DEFAULT_NEGATIVE_PROMPT, PromptCache, view_prompts, view_suffix


@pytest.mark.parametrize(
    ("az", "el", "expected"),
    [
        (0, 0, "front view"),
        (44.9, 0, "front view"),
        (-44.9, 30, "front view"),
        (45, 0, "side view"),
        (-90, 0, "side view"),
        (135, 0, "side view"),
        (135.1, 0, "back view"),
        (180, 0, "back view"),
        (-170, -30, "back view"),
        (350, 0, "front view"),
        (200, 0, "back view"),
        (0, 60, "front view"),
        (0, 60.1, "overhead view"),
        (180, 80, "overhead view"),
    ],
)
def test_view_suffix_thresholds(az, el, expected):
    assert view_suffix(az, el) == expected


def test_view_prompts():
    assert view_prompts("a cat", torch.tensor([0.0, 90.0]), torch.tensor([0.0, 0.0])) == [
        "a cat, front view",
        "a cat, side view",
    ]


def test_negative_prompt_from_paper():
    assert DEFAULT_NEGATIVE_PROMPT.startswith("unrealistic, blurry, low quality")
    assert DEFAULT_NEGATIVE_PROMPT.endswith("gloomy")


def test_cache_encodes_each_string_once(tiny_models):
    cache = PromptCache(tiny_models.tokenizer, tiny_models.text_encoder)
    a = cache.views("a man", torch.tensor([0.0, 10.0, 90.0]), torch.zeros(3))
    assert a.shape == (3, 77, 32)
    assert cache.encode_calls == 2  # "front view" twice, "side view" once
    cache.views("a man", torch.tensor([0.0, 90.0]), torch.zeros(2))
    cache.empty(4)
    cache.negative(4)
    cache.empty(2)
    cache.negative(1)
    assert cache.encode_calls == 4
    torch.testing.assert_close(a[0], a[1])
    assert not torch.allclose(a[0], a[2])


def test_fsds_steps_never_reencode(tiny_models):
    fsds = FSDS(tiny_models, FSDSConfig(image_size=64))
    images = torch.rand(2, 3, 64, 64)
    control = torch.zeros(2, 3, 64, 64)
    az, el = torch.tensor([0.0, 180.0]), torch.zeros(2)
    for step in range(3):
        fsds(images, control, "a man", az, el, step)
    assert fsds.prompts.encode_calls == 4  # front, back, empty, negative


def test_prompt_length_comes_from_the_text_encoder_when_the_tokenizer_has_none(tiny_models):
    from types import SimpleNamespace

    from fsds_guidance.prompts import prompt_length

    enc = tiny_models.text_encoder
    assert prompt_length(SimpleNamespace(model_max_length=77), enc) == 77
    assert prompt_length(SimpleNamespace(model_max_length=int(1e30)), enc) == 77  # never set
    assert prompt_length(SimpleNamespace(model_max_length=64), enc) == 64  # a shorter tokenizer wins
    assert prompt_length(SimpleNamespace(model_max_length=None), enc) == 77
    with pytest.raises(ValueError, match="model_max_length"):
        prompt_length(SimpleNamespace(model_max_length=int(1e30)), SimpleNamespace(config=SimpleNamespace()))
