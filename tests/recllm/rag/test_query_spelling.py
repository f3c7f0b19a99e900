"""recllm.rag.query_spelling: the query every stage reads, validated and with its typos corrected."""

import pytest

from recllm.rag.query_spelling import load_spelling, spelled_query
from recllm.rag.rec_request import MAX_QUERY_CHARS, RequestError


@pytest.fixture(scope="module")
def spelling(test_artifacts):
    return load_spelling(test_artifacts)


def test_a_typo_becomes_the_catalog_s_word_and_the_rest_stays(spelling):
    assert spelled_query(spelling, "кифир на завтрак") == "кефир на завтрак"
    assert spelled_query(spelling, "Маша, привет".encode()) == "Маша, привет"


def test_a_bad_query_is_a_clear_error(spelling):
    with pytest.raises(RequestError, match="query is empty"):
        spelled_query(spelling, "   ")
    with pytest.raises(RequestError, match="too long"):
        spelled_query(spelling, "кифир " * MAX_QUERY_CHARS)
