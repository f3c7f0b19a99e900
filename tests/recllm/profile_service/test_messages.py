"""Event records ↔ messages: lossless round trip; a missing required field is named, not read as zero."""

from __future__ import annotations

import pytest

from recllm.profile.event_schema import EventValidationError
from recllm_proto import profile_pb2 as pb
from recllm_client.profile_client import event_message
from recllm.profile_service.messages import PRESENCE_FIELDS, event_from_message, user_id_problem

from .conftest import purchase


def test_round_trip_keeps_every_field(samokat_item):
    record = purchase("m-1", samokat_item, "basket-1", timestamp=1_760_000_000, quantity=3, event_id="e7")
    assert event_message(record).event_id == "e7"
    assert event_from_message(event_message(record, sequence=7)) == record
    anonymous = purchase("m-1", samokat_item, "basket-1", timestamp=1_760_000_000, quantity=3)
    assert event_from_message(event_message(anonymous, event_id="")) == anonymous  # "" on the wire: no id
    view = purchase("m-1", samokat_item, None, kind="view")
    assert event_from_message(event_message(view)).basket_id is None


@pytest.mark.parametrize("field", PRESENCE_FIELDS)
def test_a_missing_required_field_is_named(samokat_item, field):
    message = event_message(purchase("m-2", samokat_item, "b"))
    message.ClearField(field)
    with pytest.raises(EventValidationError, match=f"field '{field}' is missing from the message"):
        event_from_message(message)


def test_zero_item_id_is_a_real_item_not_a_missing_one():
    message = pb.Event(item_id=0, timestamp=1, price=1.0, quantity=1)
    assert event_from_message(message).item_id == 0


@pytest.mark.parametrize("user_id,words", [("", "malformed"), ("a b", "malformed"), ("x" * 65, "oversized"),
                                           ("u000001", None), ("zz-live.1:a", None)])
def test_user_id_rule(user_id, words):
    problem = user_id_problem(user_id)
    assert problem is None if words is None else words in problem
