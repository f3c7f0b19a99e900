"""Chat feedback events through the profile service: accepted by the same validation as behaviour events, stored
once per event id, shown per kind in the profile read and read back as the user's feedback signals."""

from __future__ import annotations

from recllm.profile.events import FEEDBACK_CHEAPER, FEEDBACK_REJECT
from recllm.profile.feedback import feedback_event, feedback_signals
from recllm.profile.sqlite_store import ProfileStore
from recllm_client.profile_client import event_message


def test_feedback_events_are_ingested_once_and_read_back(profile_client, profile_artifacts, catalog, samokat_item):
    store = ProfileStore(profile_artifacts.profile_db, read_only=True)
    user = store.user_ids()[0]
    now = store.latest_timestamp()
    events = [feedback_event(catalog, user, "chat-7", 2, kind, samokat_item.item_id, now)
              for kind in (FEEDBACK_REJECT, FEEDBACK_CHEAPER)]
    messages = [event_message(e, sequence=i) for i, e in enumerate(events)]

    first = list(profile_client.ingest(messages))
    again = list(profile_client.ingest(messages))  # a retried turn

    assert [(a.accepted, a.duplicate) for a in first] == [(True, False), (True, False)]
    assert [(a.accepted, a.duplicate) for a in again] == [(True, True), (True, True)]
    stored = store.events_of(user, kind=(FEEDBACK_REJECT, FEEDBACK_CHEAPER))
    assert [(e.kind, e.item_id, e.device) for e in stored] == [(FEEDBACK_REJECT, samokat_item.item_id, "chat"),
                                                              (FEEDBACK_CHEAPER, samokat_item.item_id, "chat")]
    signals = feedback_signals(stored, catalog)
    assert signals.rejected == {samokat_item.item_id: now}
    assert signals.too_expensive == {samokat_item.category_id: samokat_item.price}
    profile = profile_client.get_profile(user)
    kinds = {k.kind: k.events for k in profile.events.kinds}
    assert kinds[FEEDBACK_REJECT] == 1 and kinds[FEEDBACK_CHEAPER] == 1
