"""How profile state is stored (issue 13): zlib with a preset dictionary of the names every profile
repeats, recognised by the id zlib writes into the stream, and state stored before still reads."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import pytest
from segmentation.domain.profile import Profile
from segmentation.infra import profile_store
from segmentation.infra.profile_store import decode_state, encode_state, inflate_state
from support import ROOT

INFRA = Path(profile_store.__file__).parent
#: Adler-32 of the dictionaries. State written with one needs exactly its bytes to be read again: a
#: dictionary is never edited, a new one gets a new file (v2: the compact memory of applied events,
#: message times relative to the delivery, no id and no per-segment due instants in the state).
V1_ID = 0x6B5D53D3
V2_ID = 0xD96A5FE6


EVENTS: list = []


def a_profile() -> Profile:
    """A customer who did one or two of everything (the events the dictionary was made from, with
    event ids as the adapters make them)."""
    import importlib.util

    from segmentation.domain.evaluation import default_evaluator

    spec = importlib.util.spec_from_file_location("state_dictionary", ROOT / "tools" / "state_dictionary.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    events = module.events
    EVENTS[:] = events()

    evaluator, profile = default_evaluator(), Profile(profile_id="7ab2ae3e569a445585aff0d6a1be41b9")
    for n, event in enumerate(events()):
        event = event.model_copy(update={"event_id": f"{n:032x}"})
        at = int(event.occurred_at.timestamp())
        profile.apply(event, [f"email#{event.identity.email}"])
        result = evaluator.evaluate(profile, at)
        profile.record_evaluation(set(result.segments), result.traits, result.next_due_at, at, event.event_id,
                                  catalog_version=evaluator.version)
    return profile


def test_the_dictionaries_are_the_ones_stored_state_was_written_with():
    assert zlib.adler32((INFRA / "state_dictionary_v1.json").read_bytes()) == V1_ID
    assert zlib.adler32((INFRA / "state_dictionary_v2.json").read_bytes()) == V2_ID


def test_state_round_trips_through_the_newest_dictionary_without_the_id_and_is_much_smaller_than_plain_zlib():
    profile = a_profile()
    stored = encode_state(profile)
    assert stored[1] & 0x20 and int.from_bytes(stored[2:6], "big") == V2_ID  # says which dictionary
    assert profile.profile_id.encode() not in inflate_state(stored)  # the item's key says it
    assert decode_state(stored, profile.profile_id).model_dump() == profile.model_dump()
    plain = zlib.compress(profile.model_dump_json(exclude={"version"}, exclude_none=True).encode(), 6)
    assert len(stored) < 0.75 * len(plain)


def as_stored_in_v1(profile: Profile) -> dict:
    """``profile`` as the store wrote it with the v1 dictionary: its id inside, per-segment due
    instants, the applied events as a list of 16-digit keys without times, whole message times."""
    old = json.loads(profile.model_dump_json(exclude={"version"}, exclude_none=True))
    old = {"profile_id": profile.profile_id, **{k: v for k, v in old.items() if k != "profile_id"}}
    old["unit_due"] = {"recent-buyers": 1_800_000_000}
    old["recent_events"] = [{"event_id": e.event_id + "0000", "changes": [list(c) for c in e.changes]}
                            for e in profile.recent_events]
    old["messages"] = {k: m.model_dump(exclude_none=True) for k, m in profile.messages.items()}
    return old


def test_state_written_with_the_v1_dictionary_still_reads():
    profile = a_profile()
    old = as_stored_in_v1(profile)
    writer = zlib.compressobj(6, zdict=(INFRA / "state_dictionary_v1.json").read_bytes())
    data = writer.compress(json.dumps(old).encode()) + writer.flush()
    assert int.from_bytes(data[2:6], "big") == V1_ID
    read = decode_state(data, profile.profile_id)
    assert read.model_dump(exclude={"recent_events"}) == profile.model_dump(exclude={"recent_events"})
    assert read.messages == profile.messages and any(m.o for m in read.messages.values())
    assert profile.recent_events  # the events of the last 72 hours are recognised as before
    assert all(read.applied(f"{n:032x}") == profile.applied(f"{n:032x}") for n in range(len(EVENTS)))


def test_state_stored_before_dictionaries_still_reads():
    profile = a_profile()
    plain = zlib.compress(json.dumps(as_stored_in_v1(profile)).encode(), 6)
    read = decode_state(plain, profile.profile_id)
    assert read.model_dump(exclude={"recent_events"}) == profile.model_dump(exclude={"recent_events"})


def test_state_written_with_an_unknown_dictionary_is_refused_with_a_reason():
    other = b'{"profile_id":"x","something":"else"}'
    writer = zlib.compressobj(6, zdict=other)
    data = writer.compress(b'{"profile_id":"x"}') + writer.flush()
    with pytest.raises(ValueError, match="unknown dictionary"):
        decode_state(data, "x")
