"""ESP member exports (issue 14): a Klaviyo profiles CSV and Mailchimp's audience CSVs become consent
facts at their own times (and Klaviyo's last open/click as engagement), bad rows rejected by line and
column, the Mailchimp status never guessed, and nothing imported that would subscribe a person the
export says is suppressed."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

from fakes import InMemoryProfileStore, RecordingPublisher
from segmentation.domain.evaluation import default_evaluator
from segmentation.domain.events import EventType
from segmentation.history.esp_exports import (
    KLAVIYO_COLUMNS,
    message_id,
    read_klaviyo_profiles_csv,
    read_mailchimp_audience_csv,
)
from segmentation.history.records import Parsed, Rejected
from segmentation.service.history_import import HistoryImport
from segmentation.service.profiles import ProfileService
from segmentation.sources import mailchimp

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "esp-exports"
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
ACCOUNT = "AbC123"
LIST = "a1b2c3d4e5"


def klaviyo(name: str = "klaviyo-profiles.csv", now: datetime = NOW) -> list[Parsed | Rejected]:
    with (FIXTURES / name).open(newline="", encoding="utf-8-sig") as f:
        return list(read_klaviyo_profiles_csv(f, ACCOUNT, now=now, name=name))


def mailchimp_file(name: str, status: str | None = None) -> list[Parsed | Rejected]:
    with (FIXTURES / name).open(newline="", encoding="utf-8-sig") as f:
        return list(read_mailchimp_audience_csv(f, LIST, status, now=NOW, name=name))


def summary(records: list[Parsed | Rejected]) -> list[tuple]:
    """(line, type, email, consent state or message id, time) per event; reasons of the others."""
    out = []
    for r in records:
        if isinstance(r, Rejected):
            out.append((r.line, "rejected", r.reason))
        elif not r.events:
            out.append((r.line, "skipped", r.skipped))
        for e in getattr(r, "events", []):
            p = e.properties
            what = p.email_consent.state if getattr(p, "email_consent", None) else getattr(p, "message_id", None)
            out.append((r.line, e.type.value, e.identity.email, what, e.occurred_at.strftime("%Y-%m-%d %H:%M:%S")))
    return out


def test_klaviyo_profiles_become_consent_facts_at_their_times_and_bad_rows_are_named():
    ana_open = message_id("ana.lopez@example.com", datetime(2025, 2, 27, 8, 10, tzinfo=UTC))
    ana_click = message_id("ana.lopez@example.com", datetime(2025, 2, 20, 19, 45, 12, tzinfo=UTC))
    ben_open = message_id("ben.okafor@example.com", datetime(2025, 1, 5, 18, 30, tzinfo=UTC))
    dan_open = message_id("dan.wu@example.com", datetime(2024, 11, 20, 10, 0, tzinfo=UTC))
    assert summary(klaviyo()) == [
        (2, "customer", "ana.lopez@example.com", "subscribed", "2024-05-14 14:22:33"),
        (2, "email_opened", "ana.lopez@example.com", ana_open, "2025-02-27 08:10:00"),
        (2, "email_clicked", "ana.lopez@example.com", ana_click, "2025-02-20 19:45:12"),
        (3, "customer", "ben.okafor@example.com", "unsubscribed", "2025-01-10 09:00:00"),
        (3, "email_opened", "ben.okafor@example.com", ben_open, "2025-01-05 18:30:00"),
        # NEVER_SUBSCRIBED without a time states no fact: the names, at the profile's creation
        (4, "customer", "chloe.martin@example.com", None, "2024-11-30 12:00:00"),
        (5, "customer", "dan.wu@example.com", "subscribed", "2023-02-01 10:00:00"),
        (5, "customer", "dan.wu@example.com", "bounced", "2024-12-01 03:14:15"),  # JSON suppression
        (5, "email_opened", "dan.wu@example.com", dan_open, "2024-11-20 10:00:00"),
        (6, "rejected", "Email is not an email address"),
        (7, "rejected", "Email Marketing Consent Timestamp is needed: the time of the SUBSCRIBED consent"),
        (8, "rejected", "Last Open is not an ISO 8601 time: 'last tuesday'"),
        (9, "rejected", "Email Marketing Consent must be one of SUBSCRIBED, UNSUBSCRIBED, NEVER_SUBSCRIBED"),
        (10, "skipped", "no email, phone or Klaviyo ID"),
        (11, "customer", "ivy@example.com", "subscribed", "2025-02-25 11:00:00"),
        (11, "customer", "ivy@example.com", "spam", "2025-02-28 10:00:00"),  # text suppression, later
        # still suppressed (since before the subscription): the subscription is not imported
        (12, "customer", "jo@example.com", None, "2025-01-01 00:00:00"),
        (12, "customer", "jo@example.com", "unsubscribed", "2025-01-01 00:00:00"),
        (13, "rejected", "Email Suppressions: HARD_BOUNCE without a time (the suppression's time is needed)"),
    ]
    ana = klaviyo()[0].events
    assert {e.source for e in ana} == {"klaviyo"} and {e.shop for e in ana} == {ACCOUNT}
    assert ana[0].identity.customer_ids == {"klaviyo": "01HZX3AB8Q4M5N6P7R8S9T0UVW"}
    assert ana[0].identity.phone == "+34600111222"
    assert (ana[0].properties.first_name, ana[0].properties.last_name) == ("Ana", "López")
    assert klaviyo()[9].events[0].properties.last_name == "O'Neil, Jr."  # a quoted comma


def test_a_reimport_is_the_same_events_and_an_engagement_message_is_its_address_and_time():
    first, again = klaviyo(), klaviyo()
    assert [e.event_id for r in first for e in getattr(r, "events", [])] == \
           [e.event_id for r in again for e in getattr(r, "events", [])]
    ids = [e.event_id for r in first for e in getattr(r, "events", [])]
    assert len(ids) == len(set(ids))
    at = datetime(2025, 2, 27, 8, 10, tzinfo=UTC)
    assert message_id("Ana.Lopez@Example.com", at) == message_id("ana.lopez@example.com", at)
    assert message_id("ana.lopez@example.com", at) != message_id("ana.lopez@example.com", at.replace(minute=11))
    assert message_id("ana.lopez@example.com", at) != message_id("ben.okafor@example.com", at)


def test_klaviyo_times_after_the_import_instant_are_refused():
    records = klaviyo(now=datetime(2025, 2, 1, tzinfo=UTC))
    assert (2, "Last Open is after the accepted range (at most 1 day ahead of now)") in [
        (r.line, r.reason) for r in records if isinstance(r, Rejected)]


def test_an_export_without_the_email_and_id_columns_is_refused_at_its_header():
    rows = io.StringIO("First Name,Email Marketing Consent\nAna,SUBSCRIBED\n")
    assert list(read_klaviyo_profiles_csv(rows, ACCOUNT, now=NOW, name="k.csv")) == [
        Rejected(2, "the header names neither Email nor Klaviyo ID", "k.csv")]
    assert list(read_klaviyo_profiles_csv(io.StringIO("a,b\n1,2\n"), ACCOUNT, name="k.csv")) == [
        Rejected(1, f"no header row naming the columns ({', '.join(KLAVIYO_COLUMNS)})", "k.csv")]


def test_the_older_email_consent_columns_are_read_too():
    rows = io.StringIO("Email,Email Consent,Email Consent Timestamp\nlea@example.com,UNSUBSCRIBED,2024-10-01T08:00:00Z\n")
    [record] = read_klaviyo_profiles_csv(rows, ACCOUNT, now=NOW)
    assert summary([record]) == [(2, "customer", "lea@example.com", "unsubscribed", "2024-10-01 08:00:00")]


def test_mailchimp_files_become_their_status_at_its_time_and_bad_rows_are_named():
    assert summary(mailchimp_file("mailchimp-subscribed.csv", "subscribed")) == [
        (2, "customer", "gina.rossi@example.com", "subscribed", "2025-02-20 18:03:44"),  # CONFIRM_TIME
        (3, "customer", "hugo@example.com", "subscribed", "2023-09-01 12:00:00"),  # added by an admin: no OPTIN_TIME
        (4, "rejected", "Email Address is not an email address"),
        (5, "rejected", "CONFIRM_TIME (or OPTIN_TIME, LAST_CHANGED) is needed: the time the member became subscribed"),
        (6, "rejected", "CONFIRM_TIME is not an ISO 8601 time: '01/05/2024 10:05'"),
    ]
    # the unsubscribed and cleaned files say what they are by their columns
    assert summary(mailchimp_file("mailchimp-unsubscribed.csv")) == [
        (2, "customer", "ana.lopez@example.com", "unsubscribed", "2025-02-28 09:15:00"),
        (3, "customer", "carl@example.com", "unsubscribed", "2025-01-02 10:00:00"),  # LAST_CHANGED
        (4, "rejected", "UNSUB_TIME is not an ISO 8601 time: 'yesterday'"),
    ]
    assert summary(mailchimp_file("mailchimp-cleaned.csv")) == [
        (2, "customer", "dan.wu@example.com", "cleaned", "2024-12-01 03:14:15")]
    gina = mailchimp_file("mailchimp-subscribed.csv", "subscribed")[0].events[0]
    assert (gina.source, gina.shop, gina.identity.customer_ids) == ("mailchimp", LIST, {"mailchimp": "8a25ff1d98"})
    assert gina.identity.phone == "+390212345678" and gina.properties.first_name == "Gina"


def test_a_mailchimp_file_whose_status_cannot_be_told_is_refused_whole_never_guessed():
    assert mailchimp_file("mailchimp-subscribed.csv") == [Rejected(
        1, "cannot tell the members' status from this file (Mailchimp exports subscribed, unsubscribed and "
           "cleaned members as separate files): give the status (subscribed, unsubscribed, cleaned, pending, "
           "transactional)", "mailchimp-subscribed.csv")]
    assert mailchimp_file("mailchimp-unsubscribed.csv", "subscribed") == [Rejected(
        1, "the file has UNSUB_TIME, so it is Mailchimp's unsubscribed export, not subscribed",
        "mailchimp-unsubscribed.csv")]
    assert mailchimp_file("mailchimp-cleaned.csv", "subscribed")[0].reason.startswith("the file has CLEAN_TIME")


def test_a_status_column_gives_each_row_its_own():
    rows = io.StringIO('"Email Address",STATUS,OPTIN_TIME,CONFIRM_TIME,LAST_CHANGED\n'
                       'a@example.com,subscribed,"2024-01-01 10:00:00",,"2024-02-01 10:00:00"\n'
                       'b@example.com,unsubscribed,,,"2024-03-01 10:00:00"\n'
                       'c@example.com,archived,,,"2024-03-01 10:00:00"\n')
    assert summary(list(read_mailchimp_audience_csv(rows, LIST, now=NOW, name="all.csv"))) == [
        (2, "customer", "a@example.com", "subscribed", "2024-01-01 10:00:00"),
        (3, "customer", "b@example.com", "unsubscribed", "2024-03-01 10:00:00"),
        (4, "rejected", "STATUS must be one of subscribed, unsubscribed, cleaned, pending, transactional"),
    ]


def test_an_unsubscribe_from_the_export_is_the_event_the_audience_webhook_makes_of_it():
    [ana] = mailchimp_file("mailchimp-unsubscribed.csv")[0].events
    hook = mailchimp.normalise({"type": "unsubscribe", "fired_at": "2025-02-28 09:15:00", "data": {
        "action": "unsub", "reason": "manual", "id": "6f5e4d3c2b", "list_id": LIST, "email": "ana.lopez@example.com",
        "email_type": "html", "merges": {"EMAIL": "ana.lopez@example.com", "FNAME": "Ana", "LNAME": "López"}}})
    assert hook.events == [ana]


def test_imported_exports_leave_each_person_with_the_latest_consent_fact_and_never_resubscribe_the_suppressed():
    store, publisher = InMemoryProfileStore(), RecordingPublisher()
    profiles = ProfileService(store, default_evaluator(), publisher, clock=lambda: int(NOW.timestamp()))
    importer = HistoryImport(profiles, store)
    with (FIXTURES / "mailchimp-unsubscribed.csv").open(newline="") as f:
        importer.run(read_mailchimp_audience_csv(f, LIST, now=NOW), "import#mc")
    importer.run(klaviyo(), "import#k")  # Ana's Klaviyo subscription (2024-05) is older than her unsubscribe

    def state(email):
        profile = store.find(f"email#{email}")
        return profile.email_consent.state, "suppressed" in profile.segments

    assert state("ana.lopez@example.com") == ("unsubscribed", True)
    assert state("ben.okafor@example.com") == ("unsubscribed", True)
    assert state("dan.wu@example.com") == ("bounced", True)
    assert state("ivy@example.com") == ("spam", True)
    assert state("jo@example.com") == ("unsubscribed", True)
    assert store.find("email#chloe.martin@example.com").email_consent is None
    ana = store.find("email#ana.lopez@example.com")
    assert ana.first_name == "Ana" and "klaviyo" in " ".join(ana.aliases) and "mailchimp" in " ".join(ana.aliases)
    # Ana's last open and click count as email engagement (one message each, delivered then)
    assert len(ana.messages) == 2
    # the export states opens and clicks, never deliveries: none is made up
    assert all(e.type != EventType.EMAIL_DELIVERED for r in klaviyo() for e in getattr(r, "events", []))
