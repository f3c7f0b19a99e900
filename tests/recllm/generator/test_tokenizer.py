"""ReplyTokenizer: BPE text, one never-split token per item, save/load round trip."""

import pytest

from recllm.generator import ReplyTokenizer

TEXTS = [
    "service: samokat | lang: ru | query: что приготовить на ужин, чтобы было полезно?",
    "Для полезного ужина подойдут <item_12>, <item_40> и <item_7>.",
    "service: megamarket | lang: en | query: gift ideas for a runner | profile: buys running shoes",
    "For a runner, consider <item_3> and <item_5>.",
] * 10
ITEMS = [3, 5, 7, 12, 40, 1000]


@pytest.fixture(scope="module")
def tok():
    return ReplyTokenizer.train(TEXTS, ITEMS, vocab_size=400)


def test_item_tokens_are_single_and_round_trip(tok):
    ids = tok.encode("подойдут <item_12>, <item_1000> и <item_7>.")
    items = [tok.item_id_of_token(i) for i in ids if tok.item_id_of_token(i) is not None]
    assert items == [12, 1000, 7]
    assert tok.item_token_id(12) in ids
    assert tok.decode(ids) == "подойдут <item_12>, <item_1000> и <item_7>."


def test_unknown_item_raises_and_plain_tokens_map_to_none(tok):
    with pytest.raises(ValueError, match="item id 99"):
        tok.item_token_id(99)
    assert tok.item_id_of_token(tok.encode("ужин")[0]) is None
    assert tok.item_id_of_token(tok.eos_id) is None


@pytest.mark.parametrize("text", ["Привет, ёжик 🙂", "naïve café", "", "  двойной  пробел "])
def test_any_text_round_trips(tok, text):
    assert tok.decode(tok.encode(text)) == text


def test_control_tokens_are_distinct_and_dropped_by_decode(tok):
    assert len(tok.control_ids) == 5
    assert tok.decode([tok.bos_id, *tok.encode("ужин"), tok.eos_id, tok.pad_id]) == "ужин"


def test_encode_prompt_layout_and_truncation(tok):
    ids = tok.encode_prompt("что приготовить на ужин " * 20, [40, 3], max_tokens=30)
    assert len(ids) == 30
    assert ids[0] == tok.bos_id and ids[-1] == tok.sep_id
    assert ids[-4:-1] == [tok.cands_id, tok.item_token_id(40), tok.item_token_id(3)]


def test_save_load(tok, tmp_path):
    tok.save(tmp_path)
    loaded = ReplyTokenizer.load(tmp_path)
    assert loaded.vocab_size == tok.vocab_size
    assert loaded.item_ids == tuple(sorted(ITEMS))
    assert loaded.encode(TEXTS[1]) == tok.encode(TEXTS[1])
    assert (loaded.pad_id, loaded.bos_id, loaded.eos_id) == (tok.pad_id, tok.bos_id, tok.eos_id)


def test_bad_arguments():
    with pytest.raises(ValueError, match="vocab_size"):
        ReplyTokenizer.train(TEXTS, ITEMS, vocab_size=10)
    with pytest.raises(ValueError, match="duplicates"):
        ReplyTokenizer.train(TEXTS, [1, 1], vocab_size=300)
    with pytest.raises(FileNotFoundError):
        ReplyTokenizer.load("/nonexistent-dir")
