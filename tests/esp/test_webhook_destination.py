"""The signed webhook destination (infra/esp/webhook.py) against a local receiver that checks every
delivery with the ``standardwebhooks`` package's ``Webhook(secret).verify`` (tests/esp/fake_webhook_receiver.py)."""

from __future__ import annotations

import base64
import logging
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from segmentation.infra.esp.webhook import WebhookDestinationClient, WebhookGoneError, secret_key, sign
from segmentation.service.ports import DestinationUnavailableError
from standardwebhooks import Webhook, WebhookVerificationError

from esp.fake_webhook_receiver import DEFAULT_SECRET, OTHER_SECRET, FakeWebhookReceiver

SECRET = DEFAULT_SECRET
FAST = {"attempts": 4, "backoff_factor": 0.001, "backoff_max": 0.01, "max_wait": 5.0, "timeout": 5.0}


def message(n: int, kind: str = "segment.entered", email: str | None = None) -> dict:
    return {
        "id": f"chg_p{n}_recent-buyers_v{n}",
        "type": kind,
        "timestamp": f"2026-11-20T10:00:{n:02d}Z",
        "data": {"profile_id": f"p{n}", "segment_id": "recent-buyers", "email": email or f"ann{n}@example.com"},
    }


BATCH = [message(1), message(2, "segment.exited"), message(3, email="zoë@exämple.com")]


@pytest.fixture
def receiver():
    with FakeWebhookReceiver(SECRET) as receiver:
        yield receiver


def client(receiver: FakeWebhookReceiver, secret: str = SECRET, **options) -> WebhookDestinationClient:
    return WebhookDestinationClient(receiver.url, secret, **{**FAST, **options})


# -- signatures --------------------------------------------------------------------------------------


def test_every_delivery_verifies_with_standardwebhooks(receiver):
    now = int(time.time())
    requests = client(receiver, clock=lambda: now).send(BATCH)

    assert requests == 3
    assert receiver.refused == []
    assert receiver.messages == BATCH
    for delivery, sent in zip(receiver.accepted, BATCH, strict=True):
        assert Webhook(SECRET).verify(delivery.body, delivery.headers) == sent  # the package's contract
        assert delivery.webhook_id == sent["id"]
        assert delivery.timestamp == str(now)
        assert delivery.signature.startswith("v1,")
        assert delivery.headers["content-type"] == "application/json"


def test_an_unpadded_secret_signs_like_the_padded_one(receiver):
    client(receiver, SECRET.rstrip("=")).send(BATCH[:1])
    assert receiver.refused == [] and receiver.messages == BATCH[:1]


@settings(max_examples=200, deadline=None)
@given(
    key=st.binary(min_size=1, max_size=64),
    padded=st.booleans(),
    message_id=st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=64),
    timestamp=st.integers(min_value=0, max_value=2**33),
    body=st.text(),
)
def test_the_signature_is_the_packages(key, padded, message_id, timestamp, body):
    secret = "whsec_" + base64.b64encode(key).decode()
    if not padded:
        secret = secret.rstrip("=")
    assert secret_key(secret) == key
    expected = Webhook(secret).sign(message_id, datetime.fromtimestamp(timestamp, UTC), body)
    assert sign(secret_key(secret), message_id, timestamp, body.encode()) == expected


def test_a_tampered_body_fails_verification(receiver):
    receiver.tamper = lambda body: body.replace(b"segment.entered", b"segment.exited")
    with pytest.raises(DestinationUnavailableError, match="answered 401"):
        client(receiver).send(BATCH[:1])
    assert receiver.accepted == []
    assert [r.webhook_id for r in receiver.refused] == [BATCH[0]["id"]]
    assert "No matching signature" in receiver.refused[0].reason


def test_a_replayed_delivery_fails_verification_when_any_signed_part_changes(receiver):
    client(receiver).send(BATCH[:1])
    (delivery,) = receiver.accepted
    webhook = Webhook(SECRET)
    assert webhook.verify(delivery.body, delivery.headers) == BATCH[0]
    changed = [
        (delivery.body.replace(b"ann1@", b"eve1@"), delivery.headers),
        (delivery.body + b" ", delivery.headers),
        (delivery.body, {**delivery.headers, "webhook-id": "chg_other"}),
        (delivery.body, {**delivery.headers, "webhook-timestamp": str(int(delivery.timestamp) + 1)}),
    ]
    for body, headers in changed:
        with pytest.raises(WebhookVerificationError):
            webhook.verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(OTHER_SECRET).verify(delivery.body, delivery.headers)
    # and the receiver refuses the changed body when it comes over HTTP
    tampered = urllib.request.Request(receiver.url, data=changed[0][0], method="POST", headers=delivery.headers)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(tampered, timeout=5)
    assert refused.value.code == 401
    assert receiver.messages == BATCH[:1] and len(receiver.refused) == 1


def test_a_wrong_secret_fails_verification_and_is_not_retried(receiver):
    with pytest.raises(DestinationUnavailableError, match="answered 401") as error:
        client(receiver, OTHER_SECRET).send(BATCH)
    assert "same secret" in str(error.value)
    assert receiver.accepted == []
    assert len(receiver.requests) == 1  # a refusal is not retried, and the rest of the batch is not sent
    assert "No matching signature" in receiver.refused[0].reason


def test_a_stale_timestamp_is_refused(receiver):
    stale = int(time.time()) - 600  # receivers allow 5 minutes
    with pytest.raises(DestinationUnavailableError, match="401"):
        client(receiver, clock=lambda: stale).send(BATCH[:1])
    assert "too old" in receiver.refused[0].reason


# -- retries and deduplication ---------------------------------------------------------------------


def test_retried_deliveries_keep_their_id_and_the_receiver_drops_the_copies(receiver):
    # the receiver stores the first message but its answers are lost twice: urllib3 sends it again
    receiver.fail_next(2, 503, after_accepting=True)
    first = client(receiver).send(BATCH)
    assert first == 5
    assert receiver.messages == BATCH
    assert [d.webhook_id for d in receiver.duplicates] == [BATCH[0]["id"]] * 2
    # the retries are the same delivery, byte for byte (same timestamp, same signature)
    assert {(d.timestamp, d.signature, d.body) for d in receiver.duplicates} == {
        (receiver.accepted[0].timestamp, receiver.accepted[0].signature, receiver.accepted[0].body)}

    # the queue delivers the batch again later: new timestamps, the same ids, nothing delivered twice
    later = int(time.time()) + 60
    assert client(receiver, clock=lambda: later).send(BATCH) == 3
    again = receiver.duplicates[2:]
    assert [d.webhook_id for d in again] == [m["id"] for m in BATCH]
    assert all(d.timestamp == str(later) for d in again)
    assert receiver.messages == BATCH
    assert receiver.refused == []


def test_a_batch_cut_short_and_sent_again_delivers_each_message_once(receiver):
    receiver.fail_next(1, webhook_id=BATCH[0]["id"])  # message 1: one 429, then delivered
    receiver.fail_next(FAST["attempts"], 503, webhook_id=BATCH[1]["id"])  # message 2: 503 every time
    sender = client(receiver)
    with pytest.raises(DestinationUnavailableError, match=r"still answered 503 after 4 requests") as error:
        sender.send(BATCH)
    assert BATCH[1]["id"] in str(error.value) and "1 of 3 delivered before it" in str(error.value)
    assert receiver.messages == BATCH[:1]
    assert sender.send(BATCH) == 3  # the queue's redelivery
    assert receiver.messages == BATCH
    assert [d.webhook_id for d in receiver.duplicates] == [BATCH[0]["id"]]


def test_bursts_of_429_and_503_deliver_every_message_once(receiver):
    batch = [message(n, "segment.entered" if n % 2 else "segment.exited") for n in range(1, 9)]
    receiver.fail_next(3, 429, retry_after=0)
    receiver.fail_next(2, 503, after_accepting=True)
    receiver.fail_next(2, 503)
    receiver.fail_next(1, 429, retry_after=0, after_accepting=True)
    requests = client(receiver, attempts=10).send(batch)  # the faults fall on the first messages
    assert requests == len(batch) + 8 == len(receiver.requests)
    assert receiver.messages == batch
    assert len(receiver.duplicates) == 3
    assert receiver.refused == []


def test_retry_after_is_honoured(receiver):
    receiver.fail_next(1, 429, retry_after=1)
    started = time.monotonic()
    assert client(receiver).send(BATCH[:1]) == 2
    assert time.monotonic() - started >= 1.0
    assert receiver.messages == BATCH[:1]


def test_a_retry_after_beyond_max_wait_gives_up_at_once(receiver):
    receiver.fail_next(1, 429, retry_after=120)
    started = time.monotonic()
    with pytest.raises(DestinationUnavailableError, match=r"429 \(Retry-After: 120\) after 1 requests"):
        client(receiver, max_wait=2.0).send(BATCH[:1])
    assert time.monotonic() - started < 1.0
    assert len(receiver.requests) == 1


def test_a_permanent_500_is_unavailable_quickly(receiver):
    receiver.fail_next(100, 500)
    started = time.monotonic()
    with pytest.raises(DestinationUnavailableError, match="500") as error:
        client(receiver, attempts=3).send(BATCH)
    assert time.monotonic() - started < 2.0
    assert not isinstance(error.value, WebhookGoneError)
    assert len(receiver.requests) == 3  # the first message, three times; the others are not tried
    assert receiver.accepted == []


def test_410_gone_is_a_configuration_error(receiver):
    receiver.fail_next(1, 410)
    with pytest.raises(WebhookGoneError, match="410 Gone") as error:
        client(receiver).send(BATCH)
    assert isinstance(error.value, DestinationUnavailableError)  # the batch stays in the queue too
    assert "destinations.yaml" in str(error.value)
    assert len(receiver.requests) == 1


@pytest.mark.parametrize("status", [400, 404, 413, 422])
def test_other_4xx_is_unavailable_with_the_status(receiver, status):
    client(receiver).send(BATCH[:1])
    receiver.fail_next(1, status)
    with pytest.raises(DestinationUnavailableError, match=f"answered {status}") as error:
        client(receiver).send(BATCH[1:])
    assert not isinstance(error.value, WebhookGoneError)
    assert len(receiver.requests) == 2
    assert receiver.messages == BATCH[:1]


def test_a_redirect_is_not_followed(receiver):
    receiver.fail_next(1, 307)
    with pytest.raises(DestinationUnavailableError):
        client(receiver).send(BATCH[:1])
    assert len(receiver.requests) == 1


def test_an_unreachable_receiver_is_unavailable():
    with FakeWebhookReceiver() as gone:
        url = gone.url
    sender = WebhookDestinationClient(url, SECRET, **{**FAST, "attempts": 2})
    with pytest.raises(DestinationUnavailableError, match="failed after retries"):
        sender.send(BATCH[:1])


def test_an_empty_batch_sends_nothing(receiver):
    assert client(receiver).send([]) == 0
    assert receiver.requests == []


@pytest.mark.parametrize("bad", [{"type": "segment.entered"}, {"id": ""}, {"id": "two words"},
                                 {"id": "line\nbreak"}, {"id": 7}])
def test_a_message_without_a_usable_id_is_refused_before_anything_is_sent(receiver, bad):
    with pytest.raises(ValueError, match="'id'"):
        client(receiver).send([BATCH[0], {**BATCH[1], **bad} if "id" in bad else bad])
    assert receiver.requests == []


# -- configuration ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("secret", "says"),
    [
        ("RtW1/m8ailVx4idGKCNxOtocwnDQ7s3hJls4FX3+2/s=", "must be 'whsec_'"),
        ("WHSEC_RtW1/m8ailVx4idGKCNxOtocwnDQ7s3hJls4FX3+2/s=", "must be 'whsec_'"),
        ("", "must be 'whsec_'"),
        ("whsec_", "not valid base64"),
        ("whsec_====", "not valid base64"),
        ("whsec_RtW1/m8ailVx4idGKCNx OtocwnDQ7s3hJls4FX3+2/s=", "not valid base64"),
        ("whsec_RtW1_m8ailVx4idGKCNxOtocwnDQ7s3hJls4FX3-2_s=", "not valid base64"),  # url-safe alphabet
        ("whsec_RtW1/m8ailVx4idGKCNxOtocwnDQ7s3hJls4FX3+2/s=x", "not valid base64"),
        ("whsec_RtW1/", "not valid base64"),  # one character too many: cut when copied
    ],
)
def test_a_bad_secret_is_a_value_error_that_says_what_to_do(secret, says):
    with pytest.raises(ValueError, match=says) as error:
        WebhookDestinationClient("https://example.com/hooks", secret)
    assert "receiver" in str(error.value)
    body = secret.removeprefix("whsec_")
    assert len(body) < 4 or body not in str(error.value)  # never shows the secret


def test_a_url_that_is_not_http_is_a_value_error():
    with pytest.raises(ValueError, match="url"):
        WebhookDestinationClient("ftp://example.com/hooks", SECRET)


def test_neither_the_secret_nor_a_body_is_logged_or_put_in_an_error(receiver, caplog):
    caplog.set_level(logging.DEBUG)
    sender = client(receiver, attempts=2)
    receiver.fail_next(1, 503)
    sender.send(BATCH)
    receiver.fail_next(2, 503)
    with pytest.raises(DestinationUnavailableError) as error:
        sender.send(BATCH)
    key = SECRET.removeprefix("whsec_")
    text = caplog.text + str(error.value) + repr(sender)
    assert "retries" in caplog.text.lower() or "Retry" in caplog.text  # urllib3 did log at DEBUG
    assert key not in text and key.rstrip("=") not in text
    assert "ann1@example.com" not in text and "profile_id" not in text
