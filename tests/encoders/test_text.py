"""The packaged MiniLM text encoder, run for real."""

import numpy as np
import pytest

from dynrec.config import EncoderConfig, RuntimeConfig
from dynrec.encoders.text import TextEncoder


@pytest.fixture(scope="module", params=["torch", "onnx"])
def encoder(request):
    return TextEncoder.from_config(EncoderConfig(), RuntimeConfig(backend=request.param, precision="fp32"))


def test_unit_vectors_of_the_documented_shape(encoder):
    vectors = encoder.encode(["Toy Story (1995). Animation, Children's, Comedy.", "x", ""])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert encoder.cache_name == "text-all-MiniLM-L6-v2-len128"
    if encoder.runtime.backend == "torch":
        assert not encoder.model.training and encoder.session is None
    else:  # serving keeps only the ONNX Runtime session
        assert encoder.model is None and encoder.session is not None


def test_related_titles_are_closer_than_unrelated(encoder):
    toy, toy2, war, wars, alien = encoder.encode(
        [
            "Toy Story (1995). Animation, Children's, Comedy.",
            "Toy Story 2 (1999). Animation, Children's, Comedy.",
            "Schindler's List (1993). Drama, War.",
            "Star Wars (1977). Action, Adventure, Sci-Fi.",
            "A space opera about rebels fighting a galactic empire with starships.",
        ]
    )
    assert toy @ toy2 > toy @ war + 0.2
    assert alien @ wars > alien @ toy


def test_texts_are_truncated_to_max_length(encoder):
    head = " ".join(["the film follows a family across three generations"] * 40)
    assert encoder.tokenize([head])["input_ids"].shape[1] == encoder.max_length  # 320 words, cut
    same_head = encoder.encode([head + " It ends in a wedding.", head + " It ends in a war."])
    np.testing.assert_allclose(same_head[0], same_head[1], atol=1e-6)
    short = encoder.encode(["It ends in a wedding.", "It ends in a war."])
    assert short[0] @ short[1] < 0.99


def test_batched_equals_one_by_one(encoder):
    texts = [
        "Heat (1995). Action, Crime, Thriller.",
        "A",
        "Jumanji is a 1995 American fantasy adventure film directed by Joe Johnston. " * 5,
        "Sabrina (1995). Comedy, Romance.",
        "GoldenEye (1995). Action, Adventure, Thriller. A James Bond film.",
    ]
    batched = encoder.encode(texts)
    single = np.concatenate([encoder.encode([t]) for t in texts])
    np.testing.assert_allclose(batched, single, atol=1e-5)


def test_tokens_match_transformers_tokenizer(encoder):
    """The tokenizer file read without transformers gives the ids AutoTokenizer gives."""
    from transformers import AutoTokenizer

    reference = AutoTokenizer.from_pretrained(str(encoder.model_path), local_files_only=True)
    texts = ["Toy Story (1995). Animation, Children's, Comedy.", "", "é ü 日本語 🙂", "word " * 300]
    ours = encoder.tokenize(texts)
    theirs = reference(texts, padding=True, truncation=True, max_length=encoder.max_length, return_tensors="np")
    np.testing.assert_array_equal(ours["input_ids"], theirs["input_ids"])
    np.testing.assert_array_equal(ours["attention_mask"], theirs["attention_mask"])
