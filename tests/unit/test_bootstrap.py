"""bootstrap: components built once, replaced under override(), forgotten by reset()."""

from __future__ import annotations

import pytest
from fakes import InMemoryProfileStore, InMemoryShopStore, RecordingPublisher
from segmentation import bootstrap


@pytest.fixture
def environment(template, monkeypatch):
    for fn in template.functions():
        for key, value in template.environment(fn).items():
            monkeypatch.setenv(key, value)
    bootstrap.reset()
    yield
    bootstrap.reset()


def test_what_is_built_from_an_overridden_component_uses_it_and_the_old_state_comes_back(environment):
    before = bootstrap.evaluator()
    store, publisher = InMemoryProfileStore(), RecordingPublisher()
    with bootstrap.override(repository=store, publisher=publisher, shop_store=InMemoryShopStore()):
        assert bootstrap.repository() is store
        sweep = bootstrap.sweep()
        assert sweep.repository is store and sweep.publisher is publisher
        assert bootstrap.sweep() is sweep  # built once inside the block too
        with bootstrap.override(publisher=RecordingPublisher()):
            assert bootstrap.profile_service().repository is store
            assert bootstrap.profile_service().publisher is not publisher
        assert bootstrap.profile_service().publisher is publisher
    assert bootstrap.evaluator() is before


def test_override_refuses_a_name_that_is_not_a_component():
    with pytest.raises(TypeError, match="repositroy"):
        with bootstrap.override(repositroy=InMemoryProfileStore()):
            pass


def test_reset_builds_again_from_the_environment(environment, monkeypatch):
    first = bootstrap.settings()
    assert bootstrap.settings() is first
    monkeypatch.setenv("DUE_SHARDS", "7")
    bootstrap.reset()
    assert bootstrap.settings() is not first and bootstrap.settings().due_shards == 7


def test_a_destinations_file_makes_the_profile_path_watch_the_synced_traits(environment, monkeypatch, tmp_path):
    path = tmp_path / "destinations.yaml"
    path.write_text("version: 1\ndestinations:\n  - id: k\n    type: klaviyo\n"
                    "    properties: {Cat: preferred_category, Orders: order_count}\n")
    monkeypatch.setenv("DESTINATIONS_FILE", str(path))
    bootstrap.reset()
    assert bootstrap.evaluator().watch == {"preferred_category", "order_count", "email"}


def test_a_bad_destinations_file_stops_the_sync_not_the_profiles(environment, monkeypatch, tmp_path):
    from segmentation.destinations.config import DestinationsError

    path = tmp_path / "destinations.yaml"
    path.write_text("version: 1\ndestinations:\n  - id: k\n    type: klaviyo\n    properties: {Cat: no_such_trait}\n")
    monkeypatch.setenv("DESTINATIONS_FILE", str(path))
    bootstrap.reset()
    assert bootstrap.evaluator().watch == frozenset()  # profiles still evaluated, nothing watched
    with pytest.raises(DestinationsError, match="no_such_trait"):
        bootstrap.destinations()  # the sync's records fail: retried, then dead-lettered and alarmed
