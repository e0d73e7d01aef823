"""Magento / Adobe Commerce adapter through Adobe I/O Events (docs/webhooks.md#adobe-commerce): the GET challenge, the
two RSA-SHA256 digital signatures, normalisation of order, customer and newsletter events, and
property tests over random input. Key pairs are generated here; Adobe's real keys are never used."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from segmentation.domain.events import CustomerProperties, EventType, OrderProperties
from segmentation.sources import magento
from segmentation.sources.errors import (
    MalformedPayloadError,
    MethodNotAllowedError,
    SecretNotConfiguredError,
    SignatureMismatchError,
    UnsupportedMediaTypeError,
    WebhookError,
)
from segmentation.sources.request import Handshake, Normalised, WebhookRequest

# Adobe I/O Events signs with two key pairs (key1 and key2); a third pair stands for an attacker.
KEY1 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
KEY2 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ATTACKER = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(key: rsa.RSAPrivateKey, fmt=serialization.PublicFormat.SubjectPublicKeyInfo) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, fmt)


PUBLIC_KEYS = [pem(KEY1), pem(KEY2)]


def rsa_sign(body: bytes, key: rsa.RSAPrivateKey = KEY1) -> str:
    return base64.b64encode(key.sign(body, padding.PKCS1v15(), hashes.SHA256())).decode()


def secrets_for(keys: list[bytes] | None = None, client_ids: list[bytes] | None = None):
    def lookup(name: str) -> list[bytes]:
        if name == "magento":
            return list(PUBLIC_KEYS if keys is None else keys)
        if name == "magento_client_id" and client_ids:
            return list(client_ids)
        raise SecretNotConfiguredError(f"no secret configured for {name}")
    return lookup


def envelope(event_type: str, value: dict, *, event_id: str = "e501d499-cfc8-450d-bc42-8637bbf12601",
             time: str = "2024-05-14T14:22:40.702Z", **extra) -> dict:
    """An Adobe Commerce event as Adobe I/O Events delivers it (CloudEvents, docs/webhooks.md#adobe-commerce)."""
    return {
        "specversion": "1.0",
        "id": "c23e6bec-f1ee-4eef-97ec-cf22f04bc5b1",
        "source": "urn:uuid:9dd02f4d-c439-481a-9ccd-ac43af7ae821",
        "type": event_type,
        "datacontenttype": "application/json",
        "time": time,
        "data": {"key": "04ac68a4-27bd-4339-a6b1-fddb3c968a2b", "value": value, "source": "acme.production",
                 "_metadata": {"commerceEdition": "Adobe Commerce", "commerceVersion": "2.4.7", "storeId": "1"}},
        "event_id": event_id,
        "recipient_client_id": "76e82e864661495b89d774b0e49adfb9",
        **extra,
    }


ORDER_TYPE = "com.adobe.commerce.observer.sales_order_save_after"
CUSTOMER_TYPE = "com.adobe.commerce.observer.customer_save_after"
NEWSLETTER_TYPE = "com.adobe.commerce.observer.newsletter_subscriber_save_after"
ORDER = {
    "entity_id": "31", "increment_id": "000000031", "state": "processing", "status": "processing",
    "customer_id": "12", "customer_is_guest": "0", "customer_email": "Ana.Lopez@Example.COM",
    "customer_firstname": "Ana", "customer_lastname": "Lopez",
    "grand_total": "129.9000", "total_refunded": None, "order_currency_code": "EUR", "base_currency_code": "EUR",
    "created_at": "2024-05-14 14:22:31", "updated_at": "2024-05-14 14:25:02",
    "billing_address": {"telephone": "+34 600 111 222", "country_id": "ES"},
    "items": [
        {"item_id": "61", "product_id": "8801", "sku": "LS-BLU-M", "name": "Linen Shirt", "qty_ordered": "2.0000",
         "price": "49.9000", "product_type": "configurable", "parent_item_id": None},
        {"item_id": "62", "product_id": "8811", "sku": "LS-BLU-M", "name": "Linen Shirt-M-Blue",
         "qty_ordered": "2.0000", "price": "0.0000", "product_type": "simple", "parent_item_id": "61"},
        {"item_id": "63", "product_id": "8802", "sku": "CS-WHT", "name": "Cotton Socks", "qty_ordered": 3,
         "price": 10.0, "product_type": "simple"},
    ],
}
CUSTOMER = {
    "entity_id": "12", "email": "Ana.Lopez@Example.com", "firstname": "Ana", "lastname": "Lopez",
    "group_id": "1", "website_id": "1", "created_at": "2024-01-01 00:00:00", "updated_at": "2024-05-14 14:00:00",
}
SUBSCRIBER = {
    "subscriber_id": "7", "customer_id": "12", "subscriber_email": "ana.lopez@example.com",
    "subscriber_status": "1", "change_status_at": "2024-05-14 13:00:00", "store_id": "1",
}


def request(body: bytes | dict | list, *, sig1: str | None = None, sig2: str | None = "", method: str = "POST",
            content_type: str | None = "application/json", query: dict | None = None,
            **extra: str | None) -> WebhookRequest:
    """A delivery as the webhook entrypoint hands it over; by default signature 1 is valid (key1) and
    signature 2 is absent."""
    raw = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
    headers = {
        "content-type": content_type,
        "x-adobe-digital-signature-1": rsa_sign(raw) if sig1 is None else sig1,
        "x-adobe-digital-signature-2": sig2 or None,
        "x-adobe-public-key1-path": "/prod/keys/pub-key-11111111-2222-3333-4444-555555555555.pem",
        "x-adobe-public-key2-path": "/prod/keys/pub-key-66666666-7777-8888-9999-000000000000.pem",
        "x-adobe-event-id": "e501d499-cfc8-450d-bc42-8637bbf12601",
        "x-adobe-retry-count": "0",
        "user-agent": "Adobe/1.0",
        **extra,
    }
    return WebhookRequest(method=method, source="magento", body=raw,
                          headers={k: v for k, v in headers.items() if v is not None}, query=query or {})


def parse(req: WebhookRequest, secrets=None) -> Normalised | Handshake:
    return magento.parse(req, secrets or secrets_for(), 0)


def only_event(result):
    assert isinstance(result, Normalised)
    assert result.ignored_reason is None
    assert len(result.events) == 1
    return result.events[0]


# -- the challenge ----------------------------------------------------------------------------------------


def no_secrets(name):
    raise AssertionError("the challenge must not need a secret")


def test_challenge_is_echoed_as_json():
    reply = magento.parse(request(b"", method="GET", query={"challenge": "8ec8d794-e0ab-42df-9017-e3dada8e84f7"}),
                          no_secrets, 0)
    assert isinstance(reply, Handshake)
    assert reply.status == 200
    assert reply.content_type == "application/json"
    assert json.loads(reply.body) == {"challenge": "8ec8d794-e0ab-42df-9017-e3dada8e84f7"}


def test_challenge_with_quotes_stays_valid_json():
    reply = parse(request(b"", method="GET", query={"challenge": 'a"b</script>'}))
    assert json.loads(reply.body) == {"challenge": 'a"b</script>'}


@pytest.mark.parametrize("query", [{}, {"challenge": ""}, {"challenge": "x" * 513}, {"token": "abc"}])
def test_get_without_a_usable_challenge_is_a_bad_request(query):
    with pytest.raises(MalformedPayloadError) as exc:
        parse(request(b"", method="GET", query=query))
    assert exc.value.status == 400


@pytest.mark.parametrize("method", ["HEAD", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_other_methods_are_not_allowed(method):
    with pytest.raises(MethodNotAllowedError) as exc:
        parse(request(envelope(ORDER_TYPE, ORDER), method=method))
    assert exc.value.status == 405


# -- signatures --------------------------------------------------------------------------------------------

BODY = json.dumps(envelope(ORDER_TYPE, ORDER), separators=(",", ":")).encode()


def flipped(data: bytes) -> bytes:
    return data[:-2] + bytes([data[-2] ^ 0x01]) + data[-1:]


def test_signature_1_by_key_1_verifies():
    assert only_event(parse(request(BODY, sig1=rsa_sign(BODY, KEY1)))).properties.order_id == "000000031"


def test_signature_2_alone_verifies():
    result = parse(request(BODY, sig1="", sig2=rsa_sign(BODY, KEY2)))
    assert only_event(result).type == EventType.ORDER


def test_either_signature_suffices_when_the_other_is_garbage():
    assert only_event(parse(request(BODY, sig1="garbage!!", sig2=rsa_sign(BODY, KEY2))))
    assert only_event(parse(request(BODY, sig1=rsa_sign(BODY, KEY1), sig2=rsa_sign(BODY, ATTACKER))))


def test_a_key_rotated_in_verifies_with_either_configured_key():
    # Only key 2 configured: a signature by key 1 fails, by key 2 passes (whichever header carries it).
    only_key2 = secrets_for([pem(KEY2)])
    with pytest.raises(SignatureMismatchError):
        parse(request(BODY, sig1=rsa_sign(BODY, KEY1)), only_key2)
    assert only_event(parse(request(BODY, sig1=rsa_sign(BODY, KEY2)), only_key2))


def test_flipped_bit_body_is_rejected():
    with pytest.raises(SignatureMismatchError) as exc:
        parse(request(flipped(BODY), sig1=rsa_sign(BODY, KEY1), sig2=rsa_sign(BODY, KEY2)))
    assert exc.value.status == 401


def test_flipped_bit_signature_is_rejected():
    raw = bytearray(base64.b64decode(rsa_sign(BODY)))
    raw[-1] ^= 0x01
    with pytest.raises(SignatureMismatchError):
        parse(request(BODY, sig1=base64.b64encode(bytes(raw)).decode()))


def test_signature_by_an_unconfigured_key_is_rejected():
    with pytest.raises(SignatureMismatchError):
        parse(request(BODY, sig1=rsa_sign(BODY, ATTACKER), sig2=rsa_sign(BODY, ATTACKER)))


def test_re_serialised_body_does_not_verify():
    spaced = json.dumps(json.loads(BODY)).encode()  # same JSON, different bytes
    with pytest.raises(SignatureMismatchError):
        parse(request(spaced, sig1=rsa_sign(BODY)))


@pytest.mark.parametrize(("sig1", "sig2"), [
    (None, None), ("", ""), ("   ", ""), ("not base64!!", ""), ("AAAA", "AAAA"), ("ÿÿÿÿ", "=="),
])
def test_missing_empty_or_garbled_signatures_are_rejected(sig1, sig2):
    req = request(BODY, sig1=sig1 if sig1 is not None else "x", sig2=sig2)
    headers = dict(req.headers)
    if sig1 is None:
        headers.pop("x-adobe-digital-signature-1")
    with pytest.raises(SignatureMismatchError) as exc:
        parse(WebhookRequest(method="POST", source="magento", body=BODY, headers=headers))
    assert exc.value.status == 401


@pytest.mark.parametrize("scheme", ["pss", "sha1", "hex"])
def test_other_signature_schemes_are_rejected(scheme):
    if scheme == "pss":
        raw = KEY1.sign(BODY, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256())
        signature = base64.b64encode(raw).decode()
    elif scheme == "sha1":
        signature = base64.b64encode(KEY1.sign(BODY, padding.PKCS1v15(), hashes.SHA1())).decode()
    else:
        signature = KEY1.sign(BODY, padding.PKCS1v15(), hashes.SHA256()).hex()
    with pytest.raises(SignatureMismatchError):
        parse(request(BODY, sig1=signature))


@pytest.mark.parametrize("configured", [
    [b"\n".join(PUBLIC_KEYS)],  # both PEMs in one value
    [PUBLIC_KEYS[0].replace(b"\n", b"\\n"), PUBLIC_KEYS[1]],  # \n written as two characters (env files)
    [pem(KEY1, serialization.PublicFormat.PKCS1), pem(KEY2, serialization.PublicFormat.PKCS1)],
    [b"".join(PUBLIC_KEYS[0].splitlines()[1:-1]), PUBLIC_KEYS[1]],  # bare base64 DER
    [b"not a key", PUBLIC_KEYS[0]],  # a broken value does not hide a good one
])
def test_public_keys_are_read_in_the_forms_operators_paste_them(configured):
    assert only_event(parse(request(BODY, sig1=rsa_sign(BODY, KEY1)), secrets_for(configured)))


@pytest.mark.parametrize("configured", [[b"not a key"], [b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"],
                                        [ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
                                            serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)]])
def test_no_usable_rsa_key_rejects_every_delivery(configured):
    with pytest.raises(SecretNotConfiguredError) as exc:
        parse(request(BODY), secrets_for(configured))
    assert exc.value.status == 401


def test_recipient_client_id_is_checked_when_configured():
    ours = secrets_for(client_ids=[b"76e82e864661495b89d774b0e49adfb9"])
    assert only_event(parse(request(BODY), ours))
    theirs = secrets_for(client_ids=[b"someone-elses-client-id"])
    with pytest.raises(SignatureMismatchError) as exc:
        parse(request(BODY), theirs)
    assert exc.value.status == 401
    missing = json.dumps({k: v for k, v in envelope(ORDER_TYPE, ORDER).items() if k != "recipient_client_id"}).encode()
    with pytest.raises(SignatureMismatchError):
        parse(request(missing), ours)


def test_wrong_content_type_is_rejected_even_when_signed():
    with pytest.raises(UnsupportedMediaTypeError) as exc:
        parse(request(BODY, content_type="text/plain"))
    assert exc.value.status == 415


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "application/cloudevents+json",
                                          "APPLICATION/JSON", None])
def test_json_content_types_are_accepted(content_type):
    assert only_event(parse(request(BODY, content_type=content_type)))


# -- orders -----------------------------------------------------------------------------------------------


def test_order_save_end_to_end():
    event = only_event(parse(request(BODY)))
    assert event.type == EventType.ORDER
    assert event.source == "magento"
    assert event.shop == "acme.production"
    assert event.identity.email == "ana.lopez@example.com"
    assert event.identity.customer_ids == {"magento": "12"}
    assert event.identity.phone == "+34600111222"
    # created_at is Magento's UTC "YYYY-MM-DD HH:MM:SS", not the CloudEvents delivery time
    assert event.occurred_at == datetime(2024, 5, 14, 14, 22, 31, tzinfo=UTC)
    props = event.properties
    assert isinstance(props, OrderProperties)
    assert props.order_id == "000000031"
    assert props.status == "placed"
    assert props.total == Decimal("129.9000") and props.currency == "EUR"
    assert props.updated_at == datetime(2024, 5, 14, 14, 25, 2, tzinfo=UTC)
    # the configurable's child line is skipped, quantities are integers
    assert [(i.product_id, i.sku, i.quantity, i.price) for i in props.items] == [
        ("8801", "LS-BLU-M", 2, Decimal("49.9000")), ("8802", "CS-WHT", 3, Decimal("10.0"))]


@pytest.mark.parametrize("event_type", [
    "com.adobe.commerce.observer.sales_order_save_after", "observer.sales_order_save_after",
    "sales_order_save_after", "com.adobe.commerce.observer.sales_order_save_commit_after",
    "com.adobe.commerce.observer.sales_order_place_after", "COM.ADOBE.COMMERCE.OBSERVER.SALES_ORDER_SAVE_AFTER",
])
def test_order_event_type_spellings(event_type):
    assert only_event(parse(request(envelope(event_type, ORDER)))).type == EventType.ORDER


@pytest.mark.parametrize(("state", "status", "expected"), [
    ("new", "pending", "placed"), ("processing", "processing", "placed"), ("complete", "complete", "placed"),
    ("holded", "holded", "placed"), (None, None, "placed"),
    ("canceled", "canceled", "cancelled"), ("processing", "canceled", "cancelled"),
    ("closed", "closed", "refunded"),
])
def test_order_state_maps_to_purchase_state(state, status, expected):
    result = parse(request(envelope(ORDER_TYPE, dict(ORDER, state=state, status=status))))
    assert only_event(result).properties.status == expected


@pytest.mark.parametrize(("state", "status"), [("pending_payment", "pending_payment"),
                                               ("payment_review", "payment_review"), ("processing", "fraud")])
def test_unpaid_order_is_identity_only(state, status):
    result = parse(request(envelope(ORDER_TYPE, dict(ORDER, state=state, status=status))))
    assert [e.type for e in result.events] == [EventType.CUSTOMER]
    assert result.ignored_reason
    event = result.events[0]
    assert event.identity.customer_ids == {"magento": "12"}
    assert isinstance(event.properties, CustomerProperties)
    assert event.properties.email_consent is None


def test_partial_refund_lowers_revenue_and_full_refund_is_refunded():
    partial = only_event(parse(request(envelope(ORDER_TYPE, dict(ORDER, total_refunded="29.90"))))).properties
    assert (partial.status, partial.total) == ("placed", Decimal("100.0000"))
    full = only_event(parse(request(envelope(ORDER_TYPE, dict(ORDER, total_refunded="129.90"))))).properties
    assert (full.status, full.total) == ("refunded", Decimal("0"))


def test_guest_order_has_no_customer_id():
    body = envelope(ORDER_TYPE, dict(ORDER, customer_id=None, customer_is_guest=True))
    event = only_event(parse(request(body)))
    assert event.identity.customer_ids == {}
    assert event.identity.email == "ana.lopez@example.com"


def test_order_without_created_at_falls_back_to_the_event_time_not_arrival():
    body = envelope(ORDER_TYPE, {k: v for k, v in ORDER.items() if k not in ("created_at", "updated_at")})
    event = only_event(parse(request(body)))
    assert event.occurred_at == datetime(2024, 5, 14, 14, 22, 40, tzinfo=UTC)
    assert event.properties.updated_at == datetime(2024, 5, 14, 14, 22, 40, 702000, tzinfo=UTC)


def test_order_id_falls_back_to_the_starter_kit_fields():
    body = {k: v for k, v in ORDER.items() if k not in ("increment_id", "entity_id")}
    event = only_event(parse(request(envelope(ORDER_TYPE, dict(body, real_order_id="000000099")))))
    assert event.properties.order_id == "000000099"


def test_order_without_identity_is_acknowledged_without_events():
    body = envelope(ORDER_TYPE, dict(ORDER, customer_email=None, customer_id=None, billing_address=None))
    result = parse(request(body))
    assert result.events == []
    assert result.ignored_reason


def test_items_keyed_by_id_and_capped_at_100():
    items = {str(n): {"product_id": str(n), "qty_ordered": "1", "price": "1"} for n in range(150)}
    event = only_event(parse(request(envelope(ORDER_TYPE, dict(ORDER, items=items)))))
    assert len(event.properties.items) == 100


def test_runtime_action_wrapped_event_is_understood():
    wrapped = {"event": envelope(ORDER_TYPE, ORDER)}
    event = only_event(parse(request(wrapped)))
    assert event.properties.order_id == "000000031"


# -- dedupe ----------------------------------------------------------------------------------------------


def test_retry_of_the_same_event_has_the_same_delivery_key_and_event_id():
    first = parse(request(BODY, **{"x-adobe-retry-count": "0"}))
    retry = parse(request(BODY, sig1="", sig2=rsa_sign(BODY, KEY2), **{"x-adobe-retry-count": "3"}))
    assert first.delivery_key == retry.delivery_key == "magento#e501d499-cfc8-450d-bc42-8637bbf12601"
    assert only_event(first).event_id == only_event(retry).event_id


def test_delivery_key_prefers_the_signed_event_id_over_the_header():
    a = parse(request(BODY, **{"x-adobe-event-id": "forged-1"}))
    b = parse(request(BODY, **{"x-adobe-event-id": "forged-2"}))
    assert a.delivery_key == b.delivery_key


def test_delivery_key_falls_back_to_the_header_then_the_body():
    body = {k: v for k, v in envelope(ORDER_TYPE, ORDER).items() if k not in ("event_id", "id")}
    assert parse(request(body, **{"x-adobe-event-id": "hdr-1"})).delivery_key == "magento#hdr-1"
    no_header = parse(request(body, **{"x-adobe-event-id": None}))
    assert no_header.delivery_key.startswith("magento#sha256:")


def test_two_saves_of_one_order_are_two_versions_of_the_same_order():
    first = only_event(parse(request(envelope(ORDER_TYPE, ORDER, event_id="ev-1"))))
    later = dict(ORDER, updated_at="2024-05-15 09:00:00", state="complete", status="complete")
    second = only_event(parse(request(envelope(ORDER_TYPE, later, event_id="ev-2"))))
    assert first.event_id != second.event_id
    assert first.properties.order_id == second.properties.order_id
    assert first.occurred_at == second.occurred_at


def test_same_fact_through_two_events_shares_the_event_id():
    a = only_event(parse(request(envelope(ORDER_TYPE, ORDER, event_id="ev-1"))))
    b = only_event(parse(request(envelope("com.adobe.commerce.observer.sales_order_save_commit_after", ORDER,
                                          event_id="ev-2"))))
    assert a.event_id == b.event_id


def test_batch_gives_every_event_and_an_order_independent_key():
    events = [envelope(ORDER_TYPE, ORDER, event_id="ev-1"),
              envelope(CUSTOMER_TYPE, CUSTOMER, event_id="ev-2"),
              envelope("com.adobe.commerce.observer.catalog_product_save_after", {"sku": "x"}, event_id="ev-3")]
    result = parse(request(events, content_type="application/cloudevents-batch+json"))
    assert [e.type for e in result.events] == [EventType.ORDER, EventType.CUSTOMER]
    reordered = parse(request(list(reversed(events))))
    assert result.delivery_key == reordered.delivery_key
    assert result.delivery_key.startswith("magento#batch:")
    assert parse(request(events[:2])).delivery_key != result.delivery_key


# -- customers and newsletter ------------------------------------------------------------------------------


def test_customer_save_is_a_customer_event():
    event = only_event(parse(request(envelope(CUSTOMER_TYPE, CUSTOMER))))
    assert event.type == EventType.CUSTOMER
    assert event.identity.email == "ana.lopez@example.com"
    assert event.identity.customer_ids == {"magento": "12"}
    assert event.occurred_at == datetime(2024, 5, 14, 14, tzinfo=UTC)
    props = event.properties
    assert (props.first_name, props.last_name) == ("Ana", "Lopez")
    assert props.attributes == {"customer_group_id": "1"}
    assert props.email_consent is None


@pytest.mark.parametrize(("flag", "state"), [(True, "subscribed"), ("1", "subscribed"), (False, None), (0, None)])
def test_customer_is_subscribed_only_ever_says_yes(flag, state):
    body = envelope(CUSTOMER_TYPE, dict(CUSTOMER, extension_attributes={"is_subscribed": flag}))
    consent = only_event(parse(request(body))).properties.email_consent
    assert (consent.state if consent else None) == state


def test_customer_nested_under_customer_data_object():
    body = envelope("com.adobe.commerce.observer.customer_save_after_data_object",
                    {"customer_data_object": {"id": 12, "email": "ana@example.com", "updated_at": "2024-05-14 14:00:00"}})
    event = only_event(parse(request(body)))
    assert event.identity.customer_ids == {"magento": "12"}


@pytest.mark.parametrize(("status", "state"), [("1", "subscribed"), (2, "pending"), ("3", "unsubscribed"),
                                               (4, "pending")])
def test_newsletter_subscriber_status_is_email_consent(status, state):
    body = envelope(NEWSLETTER_TYPE, dict(SUBSCRIBER, subscriber_status=status))
    event = only_event(parse(request(body)))
    assert event.type == EventType.CUSTOMER
    assert event.identity.email == "ana.lopez@example.com"
    assert event.identity.customer_ids == {"magento": "12"}
    assert event.properties.email_consent.state == state
    assert event.properties.email_consent.updated_at == datetime(2024, 5, 14, 13, tzinfo=UTC)
    assert event.occurred_at == datetime(2024, 5, 14, 13, tzinfo=UTC)


def test_guest_newsletter_subscriber_has_only_the_email():
    body = envelope(NEWSLETTER_TYPE, dict(SUBSCRIBER, customer_id="0"))
    event = only_event(parse(request(body)))
    assert event.identity.customer_ids == {}
    assert event.identity.email == "ana.lopez@example.com"


@pytest.mark.parametrize("event_type", ["com.adobe.commerce.observer.catalog_product_save_after",
                                        "com.adobe.commerce.plugin.magento.sales.api.order_management.place"])
def test_unused_events_are_acknowledged_without_events(event_type):
    result = parse(request(envelope(event_type, {"sku": "x"})))
    assert result.events == []
    assert result.ignored_reason


def test_signed_asynchronous_validation_post_writes_nothing():
    result = parse(request({"validationUrl": "https://csm.adobe.io/csm/registrations/validate?id=a&challenge=b"}))
    assert result.events == []
    assert "validation" in result.ignored_reason


# -- rejections ---------------------------------------------------------------------------------------------


def body_with(value: dict | None = None, **changes) -> bytes:
    ev = envelope(ORDER_TYPE, ORDER if value is None else value)
    ev.update(changes)
    return json.dumps(ev).encode()


MALFORMED = {
    "not JSON": b"this is not json",
    "JSON string": b'"hello"',
    "JSON number": b"42",
    "empty body": b"",
    "empty batch": b"[]",
    "batch of strings": b'["a"]',
    "invalid UTF-8": b'{"type": "\xff\xfe"}',
    "no type": json.dumps({k: v for k, v in envelope(ORDER_TYPE, ORDER).items() if k != "type"}).encode(),
    "type a number": body_with(type=7),
    "data not an object": body_with(data="x"),
    "value a list": body_with(data={"value": [1]}),
    "no order id": body_with({k: v for k, v in ORDER.items() if k not in ("increment_id", "entity_id")}),
    "no created_at and no time": body_with({k: v for k, v in ORDER.items() if k != "created_at"}, time=None),
    "created_at not a date": body_with(dict(ORDER, created_at="yesterday")),
    "time not a date": body_with(time="soon"),
    "grand_total abc": body_with(dict(ORDER, grand_total="abc")),
    "grand_total huge": body_with(dict(ORDER, grand_total="1e30")),
    "grand_total NaN": body_with(dict(ORDER, grand_total="NaN")),
    "items a string": body_with(dict(ORDER, items="shirt")),
    "item not an object": body_with(dict(ORDER, items=["shirt"])),
    "qty huge": body_with(dict(ORDER, items=[{"qty_ordered": "1e20"}])),
    "email not a string": body_with(dict(ORDER, customer_email=["a@b.c"])),
    "customer_id an object": body_with(dict(ORDER, customer_id={"id": 1})),
    "subscriber status unknown": body_with(dict(SUBSCRIBER, subscriber_status="9"), type=NEWSLETTER_TYPE),
    "subscriber status missing": body_with({k: v for k, v in SUBSCRIBER.items() if k != "subscriber_status"},
                                           type=NEWSLETTER_TYPE),
    "customer without any time": body_with({"entity_id": 1, "email": "a@b.co"}, type=CUSTOMER_TYPE, time=None),
    "deeply nested": b'{"type":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
}


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_signed_body_is_rejected(body):
    with pytest.raises(MalformedPayloadError) as exc:
        parse(request(body))
    assert exc.value.status == 400
    assert exc.value.reason
    assert "ana" not in exc.value.reason.lower()  # no PII echoed


def test_signature_is_checked_before_the_body_is_read():
    with pytest.raises(SignatureMismatchError):
        parse(request(b"not json", sig1=rsa_sign(b"something else")))


def test_oversized_batch_is_rejected():
    batch = [envelope(ORDER_TYPE, {"x": 1}, event_id=f"e{n}") for n in range(1001)]
    with pytest.raises(MalformedPayloadError):
        parse(request(batch))


# -- the sample payloads shipped for segctl users (events/magento/) ------------------------------------------

SAMPLES = Path(__file__).resolve().parents[2] / "events" / "magento"


@pytest.mark.parametrize(("name", "kind", "detail"), [
    ("order-placed.json", EventType.ORDER, ("placed", Decimal("64.8000"))),
    ("order-canceled.json", EventType.ORDER, ("cancelled", Decimal("64.8000"))),
    ("customer-saved.json", EventType.CUSTOMER, "subscribed"),
    ("newsletter-subscribed.json", EventType.CUSTOMER, "subscribed"),
    ("newsletter-unsubscribed.json", EventType.CUSTOMER, "unsubscribed"),
])
def test_sample_payloads_normalise_as_documented(name, kind, detail):
    body = (SAMPLES / name).read_bytes()
    event = only_event(parse(request(body, sig1=rsa_sign(body, KEY1))))
    assert event.type == kind
    assert event.shop == "acme.production"
    assert event.identity.email == "ana.lopez@example.com"
    assert event.identity.customer_ids == {"magento": "12"}
    if kind == EventType.ORDER:
        assert event.occurred_at == datetime(2024, 5, 14, 14, 22, 31, tzinfo=UTC)
        assert (event.properties.status, event.properties.total) == detail
        assert [(i.sku, i.quantity) for i in event.properties.items] == [("LS-BLU-M", 1), ("CS-WHT", 2)]
    else:
        assert event.properties.email_consent.state == detail


# -- property tests -----------------------------------------------------------------------------------------

FUZZ = settings(max_examples=100, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
TYPES = [ORDER_TYPE, CUSTOMER_TYPE, NEWSLETTER_TYPE, "com.adobe.commerce.observer.catalog_product_save_after"]

odd_text = st.text(
    alphabet=st.characters() | st.characters(categories=["Cs", "Cc", "Cf", "Co", "Mn"])
    | st.sampled_from(["\u0000", "\u202e", "\ufeff", "\ud800", "T", ":", "-", "İ", "ß", "٣"]),
    max_size=30,
)
scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=-(10**300), max_value=10**300)
           | st.floats(allow_nan=True, allow_infinity=True) | odd_text)
json_values = st.recursive(
    scalars, lambda children: st.lists(children, max_size=4) | st.dictionaries(odd_text, children, max_size=4),
    max_leaves=20,
)


def mostly(valid: st.SearchStrategy) -> st.SearchStrategy:
    return st.integers(0, 9).flatmap(lambda n: valid if n else json_values)


times = st.sampled_from(["2024-05-14 14:22:31", "2024-05-14T14:22:31Z", "2024-05-14", "0001-01-01 00:00:00",
                         "9999-12-31T23:59:59-01:00", "2024-02-30 00:00:00", ""])
money = st.sampled_from(["129.9000", "0", "-1", "1e14", "1e15", "NaN", ""]) | st.floats() | st.integers()
ids = st.integers(min_value=0, max_value=2**63) | st.text(max_size=10)
good_times = st.sampled_from(["2024-05-14 14:22:31", "2024-05-14T14:22:31Z", "2024-05-14T14:22:31.5+02:00"])
value_shaped = st.fixed_dictionaries({
    # usually present and plausible, so most examples reach the normalisers
    "increment_id": mostly(ids), "entity_id": mostly(ids), "customer_email": mostly(st.just("Ana@Example.COM")),
    "email": mostly(st.just("a@b.co")), "created_at": mostly(good_times | times), "updated_at": mostly(good_times),
    "subscriber_status": mostly(st.sampled_from([1, "2", 3, "4", 5])), "subscriber_email": mostly(st.just("a@b.co")),
}, optional={
    "state": mostly(st.sampled_from(["new", "processing", "complete", "canceled", "closed", "pending_payment"])),
    "customer_id": mostly(ids), "customer_is_guest": mostly(st.sampled_from([True, "1", 0])),
    "grand_total": mostly(money), "total_refunded": mostly(money), "billing_address": json_values,
    "items": mostly(st.lists(st.fixed_dictionaries({}, optional={
        "product_id": mostly(ids), "qty_ordered": mostly(money), "price": mostly(money),
        "parent_item_id": mostly(ids)}), max_size=3)),
    "change_status_at": mostly(times), "extension_attributes": mostly(st.fixed_dictionaries(
        {"is_subscribed": st.booleans()})),
})
event_shaped = st.builds(
    lambda t, v, time, eid: envelope(t, v, time=time, event_id=eid),
    mostly(st.sampled_from(TYPES)), value_shaped, mostly(good_times) | times, mostly(st.text(max_size=40)),
)
header_names = st.sampled_from(["content-type", "x-adobe-digital-signature-1", "x-adobe-digital-signature-2",
                                "x-adobe-event-id", "x-adobe-public-key1-path"]) | st.text(max_size=20)
header_values = st.sampled_from(["application/json", "text/plain", "", "AAAA"]) | st.text(max_size=60)
random_headers = st.dictionaries(header_names.map(str.lower), header_values, max_size=6)


def outcome(req: WebhookRequest, secrets=None):
    try:
        result = magento.parse(req, secrets or secrets_for(), 0)
    except WebhookError as exc:
        assert exc.reason
        return exc
    assert isinstance(result, Normalised | Handshake)
    if isinstance(result, Normalised):
        assert result.delivery_key.startswith("magento#")
        result.delivery_key.encode("utf-8")  # storable as a DynamoDB key
        for event in result.events:
            event.model_dump_json()  # publishable on the bus
            assert event.source == "magento"
            assert not event.identity.is_empty()
            assert event.occurred_at.utcoffset().total_seconds() == 0
    return result


def signed(body: bytes) -> WebhookRequest:
    return WebhookRequest(method="POST", source="magento", body=body, headers={
        "content-type": "application/json", "x-adobe-digital-signature-2": rsa_sign(body, KEY2)})


@FUZZ
@given(body=st.binary(max_size=400))
def test_signed_random_bytes_never_crash(body):
    outcome(signed(body))


@FUZZ
@given(value=json_values, ascii_only=st.booleans())
def test_signed_random_json_never_crashes(value, ascii_only):
    result = outcome(signed(json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")))
    if not isinstance(value, dict | list):
        assert isinstance(result, MalformedPayloadError)


@FUZZ
@given(events=st.lists(event_shaped, min_size=1, max_size=3), batch=st.booleans(), data=st.data())
def test_signed_commerce_shaped_and_truncated_bodies_never_crash(events, batch, data):
    body = json.dumps(events if batch else events[0]).encode("utf-8", "surrogatepass")
    outcome(signed(body))
    cut = data.draw(st.integers(min_value=0, max_value=len(body) - 1))
    assert isinstance(outcome(signed(body[:cut])), MalformedPayloadError)


@FUZZ
@given(headers=random_headers, body=st.binary(max_size=200) | event_shaped.map(lambda v: json.dumps(v).encode()),
       method=st.sampled_from(["POST", "GET", "HEAD"]), query=st.dictionaries(st.sampled_from(["challenge", "x"]),
                                                                          st.text(max_size=20), max_size=2))
def test_random_requests_never_crash_and_nothing_unsigned_is_normalised(headers, body, method, query):
    result = outcome(WebhookRequest(method=method, source="magento", body=body, headers=headers, query=query))
    assert not isinstance(result, Normalised)  # no random header is a valid RSA signature
    if isinstance(result, Handshake):
        assert method == "GET" and json.loads(result.body) == {"challenge": query["challenge"]}


@FUZZ
@given(event=event_shaped, data=st.data())
def test_wrong_signature_is_never_normalised(event, data):
    body = json.dumps(event).encode()
    good = base64.b64decode(rsa_sign(body, KEY1))
    i, bit = data.draw(st.integers(0, len(good) - 1)), data.draw(st.integers(0, 7))
    bad = data.draw(st.one_of(
        st.just(base64.b64encode(good[:i] + bytes([good[i] ^ (1 << bit)]) + good[i + 1:]).decode()),
        st.just(rsa_sign(body, ATTACKER)),
        st.just(rsa_sign(body + b" ", KEY1)),
        st.text(max_size=60),
    ))
    req = WebhookRequest(method="POST", source="magento", body=body, headers={
        "content-type": "application/json", "x-adobe-digital-signature-1": bad,
        "x-adobe-digital-signature-2": data.draw(st.sampled_from(["", bad, rsa_sign(body, ATTACKER)]))})
    with pytest.raises(SignatureMismatchError):
        magento.parse(req, secrets_for(), 0)


def test_lone_surrogates_are_malformed_and_never_reach_the_delivery_key():
    with pytest.raises(MalformedPayloadError) as exc:
        parse(request(body_with(dict(ORDER, customer_firstname="\ud800"))))
    assert "Unicode" in exc.value.reason
    odd_id = json.dumps(envelope("com.adobe.commerce.observer.catalog_product_save_after", {}, event_id="\udfff"))
    result = parse(request(odd_id.encode(), **{"x-adobe-event-id": None}))
    assert result.delivery_key.startswith("magento#sha256:")
