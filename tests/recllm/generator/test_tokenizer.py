"""The reply tokenizer: Semantic-ID code tokens instead of one token per item, prompts, replies, save/load."""

import pytest

from recllm.generator import ReplyTokenizer, sid_token

from .conftest import TEXTS


def test_vocabulary_holds_code_tokens_not_items(tok, codes):
    assert tok.sid_vocab_sizes == tuple(codes.vocab_sizes)
    assert len(tok.sid_token_ids) == sum(codes.vocab_sizes)  # grows with the codebook, not with the catalog
    assert tok.sid_depth == 4
    level, code = tok.sid_of_token(tok.sid_token_id(2, 5))
    assert (level, code) == (2, 5)
    assert tok.sid_of_token(tok.eos_id) is None
    assert "<item_3>" not in tok._tok.get_vocab(with_added_tokens=True)


def test_encode_reply_swaps_markers_for_sid_spans(tok, codes):
    ids = tok.encode_reply("Для ужина: <item_3> и <item_7>.", codes.sid_of)
    spans = [i for i in ids if tok.sid_of_token(i) is not None]
    assert spans == tok.sid_span(codes.sid_of(3)) + tok.sid_span(codes.sid_of(7))
    assert tok.decode([i for i in ids if tok.sid_of_token(i) is None]) == "Для ужина:  и ."


def test_encode_prompt_layout_and_cut(tok, codes):
    sids = [codes.sid_of(1), codes.sid_of(2)]
    ids = tok.encode_prompt(TEXTS[0], sids, max_tokens=200)
    assert ids[0] == tok.bos_id and ids[-1] == tok.sep_id
    cands = ids.index(tok.cands_id)
    assert ids[cands + 1:-1] == tok.sid_span(sids[0]) + tok.sid_span(sids[1])
    short = tok.encode_prompt(TEXTS[0] * 10, sids, max_tokens=20)
    assert len(short) == 20
    with pytest.raises(ValueError, match="do not fit"):
        tok.encode_prompt(TEXTS[0], sids * 3, max_tokens=20)


def test_save_load_round_trip(tok, tmp_path):
    tok.save(tmp_path)
    back = ReplyTokenizer.load(tmp_path)
    assert back.vocab_size == tok.vocab_size and back.sid_vocab_sizes == tok.sid_vocab_sizes
    assert back.encode("Для ужина") == tok.encode("Для ужина")
    assert sid_token(0, 1) == "<sid_0_1>"


def test_bad_arguments():
    with pytest.raises(ValueError, match="vocab_size"):
        ReplyTokenizer.train(TEXTS, [4, 4], vocab_size=100)
    with pytest.raises(ValueError, match="sid_vocab_sizes"):
        ReplyTokenizer.train(TEXTS, [4, 0], vocab_size=300)
