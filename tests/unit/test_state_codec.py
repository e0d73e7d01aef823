"""How profile state is stored (issue 13): zlib with a preset dictionary of the names every profile
repeats, recognised by the id zlib writes into the stream, and state stored before still reads."""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest
from segmentation.domain.profile import Profile
from segmentation.infra import profile_store
from segmentation.infra.profile_store import decode_state, encode_state
from support import ROOT

INFRA = Path(profile_store.__file__).parent
#: Adler-32 of state_dictionary_v1.json. State written with it needs exactly these bytes to be read
#: again: a dictionary is never edited, a new one gets a new file.
V1_ID = 0x6B5D53D3


def a_profile() -> Profile:
    """A customer who did one or two of everything (the events the dictionary was made from, with
    event ids as the adapters make them)."""
    import importlib.util

    from segmentation.domain.evaluation import default_evaluator

    spec = importlib.util.spec_from_file_location("state_dictionary", ROOT / "tools" / "state_dictionary.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    events = module.events

    evaluator, profile = default_evaluator(), Profile(profile_id="7ab2ae3e569a445585aff0d6a1be41b9")
    for n, event in enumerate(events()):
        event = event.model_copy(update={"event_id": f"{n:032x}"})
        at = int(event.occurred_at.timestamp())
        profile.apply(event, [f"email#{event.identity.email}"])
        result = evaluator.evaluate(profile, at)
        profile.record_evaluation(set(result.segments), result.traits, result.next_due_at, at, event.event_id,
                                  catalog_version=evaluator.version, unit_due=result.unit_due)
    return profile


def test_the_v1_dictionary_is_the_one_stored_state_was_written_with():
    assert zlib.adler32((INFRA / "state_dictionary_v1.json").read_bytes()) == V1_ID


def test_state_round_trips_through_the_dictionary_and_is_much_smaller_than_plain_zlib():
    profile = a_profile()
    stored = encode_state(profile)
    assert stored[1] & 0x20 and int.from_bytes(stored[2:6], "big") == V1_ID  # says which dictionary
    assert decode_state(stored).model_dump() == profile.model_dump()
    plain = zlib.compress(profile.model_dump_json(exclude={"version"}, exclude_none=True).encode(), 6)
    assert len(stored) < 0.8 * len(plain)


def test_state_stored_before_dictionaries_still_reads():
    profile = a_profile()
    plain = zlib.compress(profile.model_dump_json(exclude={"version"}, exclude_none=True).encode(), 6)
    assert decode_state(plain).model_dump() == profile.model_dump()


def test_state_written_with_an_unknown_dictionary_is_refused_with_a_reason():
    other = b'{"profile_id":"x","something":"else"}'
    writer = zlib.compressobj(6, zdict=other)
    data = writer.compress(b'{"profile_id":"x"}') + writer.flush()
    with pytest.raises(ValueError, match="unknown dictionary"):
        decode_state(data)
