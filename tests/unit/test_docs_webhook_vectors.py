"""The signature test vectors of docs/webhooks.md verify with the adapters' own verifiers, and a
changed byte or the documented negative does not. The figures are read from the page itself, so the
page and the code cannot drift apart."""

from __future__ import annotations

import hashlib
import re

import pytest
from segmentation.sources import klaviyo, magento, mandrill, segment_tracking, sendgrid, shopify, woocommerce
from segmentation.sources.errors import SignatureMismatchError
from support import ROOT

DOC = ROOT / "docs" / "webhooks.md"
VECTOR = re.compile(r"<!-- vector: ([\w-]+) -->\n```text\n(.*?)\n```", re.S)
SOURCES = {"shopify", "woocommerce", "mandrill", "segment", "klaviyo", "sendgrid", "adobe-commerce"}


def vectors() -> dict[str, dict[str, str]]:
    found = {}
    for name, block in VECTOR.findall(DOC.read_text(encoding="utf-8")):
        fields = {}
        for line in block.split("\n"):
            key, sep, value = line.partition(": ")
            assert sep and re.fullmatch(r"[\w-]+", key), f"{name}: not a `name: value` line: {line!r}"
            fields[key] = value
        found[name] = fields
    return found


VECTORS = vectors()


def flipped(data: bytes) -> bytes:
    """``data`` with the lowest bit of its second-to-last byte flipped."""
    return data[:-2] + bytes([data[-2] ^ 0x01]) + data[-1:]


def test_the_page_has_a_vector_for_every_signed_source():
    assert set(VECTORS) == SOURCES


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_documented_body_is_the_documented_bytes(name):
    v = VECTORS[name]
    body = v["body"].encode()
    assert len(body) == int(v["body-bytes"])
    if "body-sha256" in v:
        assert hashlib.sha256(body).hexdigest() == v["body-sha256"]


# -- the HMAC schemes over the raw body: Shopify, WooCommerce, Segment --------------------------

RAW_BODY_HMAC = {
    "shopify": (shopify.verify, "X-Shopify-Hmac-Sha256"),
    "woocommerce": (woocommerce.verify, "X-WC-Webhook-Signature"),
    "segment": (segment_tracking.verify, "X-Signature"),
}


@pytest.mark.parametrize("name", sorted(RAW_BODY_HMAC))
def test_raw_body_hmac_vector_verifies_and_its_negative_is_the_flipped_body(name):
    verify, header = RAW_BODY_HMAC[name]
    v = VECTORS[name]
    secrets, body = [v["secret"].encode()], v["body"].encode()
    verify(secrets, body, v[header])  # raises if refused
    verify(secrets, flipped(body), v["negative"])  # the negative is the flipped body's own MAC
    with pytest.raises(SignatureMismatchError):
        verify(secrets, body, v["negative"])
    with pytest.raises(SignatureMismatchError):
        verify(secrets, flipped(body), v[header])


# -- Mandrill: the configured URL and the form parameters ----------------------------------------


def test_mandrill_vector_verifies_over_the_url_and_the_decoded_parameters():
    v = VECTORS["mandrill"]
    key, url = [v["key"].encode()], v["url"]
    params = mandrill.form_params(v["body"].encode())
    signed = mandrill.signed_data(url, params)
    assert len(signed) == int(v["signed-bytes"])
    assert hashlib.sha256(signed).hexdigest() == v["signed-sha256"]
    assert mandrill.verify(key, [url], params, v["X-Mandrill-Signature"])
    assert not mandrill.verify(key, [url], params, v["negative"])
    assert mandrill.verify(key, [url + "/"], params, v["negative"])  # what the negative was made for
    assert not mandrill.verify(key, [url + "/"], params, v["X-Mandrill-Signature"])


# -- Klaviyo: body followed by the timestamp, within 300 s ---------------------------------------


def test_klaviyo_vector_verifies_over_body_and_timestamp_within_the_window():
    v = VECTORS["klaviyo"]
    secrets, body, ts = [v["secret"].encode()], v["body"].encode(), v["Klaviyo-Timestamp"]
    assert hashlib.sha256(body + ts.encode()).hexdigest() == v["signed-sha256"]
    sent = klaviyo.parse_timestamp(ts)
    klaviyo.verify(secrets, body, v["Klaviyo-Signature"], ts, sent + 300)
    assert v["Klaviyo-Webhook-Id"] in v["body"]  # the header must equal the signed meta.klaviyo_webhook_id
    with pytest.raises(SignatureMismatchError):
        klaviyo.verify(secrets, flipped(body), v["Klaviyo-Signature"], ts, sent)
    with pytest.raises(SignatureMismatchError):  # the timestamp is signed
        klaviyo.verify(secrets, body, v["Klaviyo-Signature"], ts.replace(":33 ", ":34 "), sent)
    with pytest.raises(SignatureMismatchError):  # and must be recent
        klaviyo.verify(secrets, body, v["Klaviyo-Signature"], ts, sent + 301)


# -- the public-key schemes: SendGrid (ECDSA P-256) and Adobe (RSA-SHA256) -----------------------


def test_sendgrid_vector_verifies_with_the_documented_public_key():
    v = VECTORS["sendgrid"]
    keys, body = [v["public-key"].encode()], v["body"].encode()
    ts, signature = v["X-Twilio-Email-Event-Webhook-Timestamp"], v["X-Twilio-Email-Event-Webhook-Signature"]
    sendgrid.verify(keys, body, signature, ts, int(ts))
    with pytest.raises(SignatureMismatchError):
        sendgrid.verify(keys, flipped(body), signature, ts, int(ts))
    with pytest.raises(SignatureMismatchError):  # the timestamp is part of the signed message
        sendgrid.verify(keys, body, signature, str(int(ts) + 1), int(ts))
    with pytest.raises(SignatureMismatchError):
        sendgrid.verify(keys, body, signature, ts, int(ts) + 301)


def test_adobe_vector_verifies_with_the_documented_public_key():
    v = VECTORS["adobe-commerce"]
    keys, body = magento.public_keys([v["public-key"].encode()]), v["body"].encode()
    signature = v["x-adobe-digital-signature-1"]
    magento.verify(keys, body, [signature, None])
    magento.verify(keys, body, [None, signature])  # either header may carry it
    with pytest.raises(SignatureMismatchError):
        magento.verify(keys, flipped(body), [signature, None])
