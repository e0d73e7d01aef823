"""Issue 10: impossible times, negative amounts and junk emails, through WebhookFunction's route for
every source (docs/webhooks.md "Accepted values"). A violation is a 400 naming the field, and nothing
is published or claimed; a junk email is dropped and the rest of the event kept.

On the in-memory fakes (tests/fakes.py): what is checked is the webhook service's answer and what it
publishes or claims, not the DynamoDB layout (the dedupe table's items: test_webhook_function.py,
test_dedupe_faults.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest
from segctl.provision import dev_secret_values
from segctl.signing import (
    adobe_headers,
    klaviyo_headers,
    mailchimp_delivery,
    mandrill_delivery,
    segment_headers,
    sendgrid_headers,
    shopify_headers,
    woocommerce_headers,
)
from segmentation import bootstrap
from support import ROOT, webhook_keys

EVENTS = ROOT / "events"


keys = webhook_keys  # () -> (SendGrid EC private, its public, Adobe RSA private, its public)


@pytest.fixture
def secrets(fakes) -> dict:
    """The webhook secrets, with the demo SendGrid and Adobe public keys, in the fake secret store."""
    ec_key, ec_public, rsa_key, rsa_public = keys()
    values = {**dev_secret_values({}), "sendgrid": ec_public, "magento": rsa_public}
    fakes.secrets.values = dict(values)
    return {**values, "_sendgrid": ec_key, "_magento": rsa_key}


def iso(when: datetime) -> str:
    return when.replace(microsecond=0).isoformat().replace("+00:00", "Z")  # strftime drops year 1's zeros


def plain(when: datetime) -> str:
    """``YYYY-MM-DD HH:MM:SS`` (Magento, Mailchimp)."""
    return when.replace(microsecond=0, tzinfo=None).isoformat(sep=" ")


def epoch(when: datetime) -> int:
    return int((when - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds())  # years 1 and 9999 too


def sample(path: str):
    return json.loads((EVENTS / path).read_text())


# -- one signed delivery per source, with the event time and the payload's amounts set ------------------
# Each builder: (secrets, when, edit) -> (path, body, headers); ``edit`` changes the payload before signing.


def shopify(s, when, edit=None, topic="orders/create"):
    payload = {"id": 9001, "email": "range@example.com", "created_at": iso(when), "updated_at": iso(when),
               "currency": "EUR", "total_price": "59.90", "financial_status": "paid",
               "customer": {"id": 7001, "email": "range@example.com"},
               "line_items": [{"product_id": 8801, "title": "Linen Shirt", "quantity": 1, "price": "49.90"}]}
    (edit or (lambda p: None))(payload)
    body = json.dumps(payload).encode()
    return "/webhooks/shopify", body, shopify_headers(s["shopify"], body, topic, "evt-range")


def shopify_refund(s, when, edit=None):
    payload = {"id": 77, "order_id": 9001, "created_at": iso(when),
               "transactions": [{"amount": "10.00", "kind": "refund", "status": "success"}]}
    (edit or (lambda p: None))(payload)
    body = json.dumps(payload).encode()
    return "/webhooks/shopify", body, shopify_headers(s["shopify"], body, "refunds/create", "evt-refund")


def woocommerce(s, when, edit=None):
    payload = sample("woocommerce/order-created.json")
    payload.update(date_created_gmt=iso(when)[:-1], date_modified_gmt=iso(when)[:-1])
    (edit or (lambda p: None))(payload)
    body = json.dumps(payload).encode()
    return "/webhooks/woocommerce", body, woocommerce_headers(s["woocommerce"], body, "order.created")


def magento(s, when, edit=None):
    envelope = sample("magento/order-placed.json")
    envelope["data"]["value"].update(created_at=plain(when), updated_at=plain(when))
    (edit or (lambda p: None))(envelope["data"]["value"])
    body = json.dumps(envelope).encode()
    return "/webhooks/magento", body, adobe_headers(s["_magento"], body)


def segment(s, when, edit=None):
    message = {"type": "track", "event": "Order Completed", "userId": "u-range", "messageId": "m-range",
               "timestamp": iso(when), "properties": {"order_id": "o-range", "total": 30, "revenue": 25,
                                                      "products": [{"product_id": "p1", "price": 15, "quantity": 2}]}}
    (edit or (lambda p: None))(message)
    body = json.dumps(message).encode()
    return "/webhooks/segment", body, segment_headers(s["segment"], body)


def klaviyo(s, when, edit=None):
    payload = sample("klaviyo/opened.json")
    payload["data"][0]["payload"]["data"]["attributes"]["datetime"] = iso(when)
    (edit or (lambda p: None))(payload)
    body = json.dumps(payload).encode()
    stamp = datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")  # the signature's own time: now
    return "/webhooks/klaviyo", body, klaviyo_headers(s["klaviyo"], body, stamp, payload["meta"]["klaviyo_webhook_id"])


def mailchimp(s, when, edit=None):
    form = {"type": "subscribe", "fired_at": plain(when), "data[id]": "mc-range",
            "data[email]": "range@example.com", "data[list_id]": "list-1"}
    (edit or (lambda p: None))(form)
    body, headers = mailchimp_delivery(form)
    return f"/webhooks/mailchimp?token={quote(s['mailchimp'])}", body, headers


def mandrill(s, when, edit=None):
    events = [{"event": "open", "_id": "m-range", "ts": epoch(when), "msg": {"email": "range@example.com"}}]
    (edit or (lambda p: None))(events[0])
    body, headers = mandrill_delivery(s["mandrill"], s["mandrill_url"], json.dumps(events))
    return "/webhooks/mandrill", body, headers


def sendgrid(s, when, edit=None):
    events = [{"email": "range@example.com", "timestamp": epoch(when), "event": "open", "sg_event_id": "sg-range",
               "sg_message_id": "abc123.filter0001"}]
    (edit or (lambda p: None))(events[0])
    body = json.dumps(events).encode()
    return "/webhooks/sendgrid", body, sendgrid_headers(s["_sendgrid"], body, str(int(datetime.now(UTC).timestamp())))


#: source -> (builder, the field its event time is read from, as a 400 names it)
TIMED = {
    "shopify": (shopify, "created_at"),
    "shopify-refund": (shopify_refund, "created_at"),
    "woocommerce": (woocommerce, "date_created_gmt"),
    "magento": (magento, "created_at"),
    "segment": (segment, "timestamp"),
    "klaviyo": (klaviyo, "attributes.datetime"),
    "mailchimp": (mailchimp, "fired_at"),
    "mandrill": (mandrill, "ts"),
    "sendgrid": (sendgrid, "timestamp"),
}


def post(api, delivery):
    path, body, headers = delivery
    return api("POST", path, body, headers)


# -- times ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("source", list(TIMED))
def test_a_time_within_a_day_ahead_is_accepted(fake_api, fakes, secrets, source):
    """The control for the rejections below: each builder makes a valid delivery, and clock skew of
    up to a day is tolerated."""
    build, _ = TIMED[source]
    resp = post(fake_api, build(secrets, datetime.now(UTC) + timedelta(hours=23)))
    assert resp.status == 200, resp.text


@pytest.mark.parametrize("when", [
    pytest.param(lambda: datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC), id="year-9999"),
    pytest.param(lambda: datetime.now(UTC) + timedelta(days=1, minutes=5), id="a-day-and-5-minutes-ahead"),
])
@pytest.mark.parametrize("source", list(TIMED))
def test_a_time_after_the_accepted_range_is_400_naming_the_field(fake_api, fakes, secrets, source, when):
    build, field = TIMED[source]
    resp = post(fake_api, build(secrets, when()))
    assert resp.status == 400, resp.text
    reason = resp.json()["reason"]
    assert f"{field} is after the accepted range (at most 1 day ahead of now)" in reason
    assert fakes.nothing_stored()


@pytest.mark.parametrize("when", [
    pytest.param(datetime(1, 1, 1, tzinfo=UTC), id="year-1"),
    pytest.param(datetime(1970, 1, 1, tzinfo=UTC), id="epoch-zero"),
    pytest.param(datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC), id="a-second-before-2000"),
])
@pytest.mark.parametrize("source", list(TIMED))
def test_a_time_before_2000_is_400_naming_the_field(fake_api, fakes, secrets, source, when):
    build, field = TIMED[source]
    resp = post(fake_api, build(secrets, when))
    assert resp.status == 400, resp.text
    assert f"{field} is before the accepted range (2000-01-01T00:00:00Z or later)" in resp.json()["reason"]
    assert fakes.nothing_stored()


@pytest.mark.parametrize(("field", "edit"), [
    ("updated_at", lambda p: p.update(updated_at="9999-12-31T23:59:59Z")),
    ("consent_updated_at", lambda p: p.update(email_marketing_consent={
        "state": "subscribed", "consent_updated_at": "0001-01-01T00:00:00Z"})),
])
def test_every_time_a_shopify_customer_carries_is_checked(fake_api, fakes, secrets, field, edit):
    def customer(payload):
        payload.clear()
        payload.update(id=7001, email="range@example.com", created_at=iso(datetime.now(UTC)), first_name="Ana")
        edit(payload)

    resp = post(fake_api, shopify(secrets, datetime.now(UTC), customer, topic="customers/update"))
    assert resp.status == 400, resp.text
    assert resp.json()["reason"].startswith(f"{field} is ")
    assert fakes.nothing_stored()


def test_a_checkout_completed_in_the_year_9999_is_400(fake_api, fakes, secrets):
    def checkout(payload):
        payload.pop("financial_status")
        payload.pop("line_items")
        payload.update(token="co-range", completed_at="9999-12-31T23:59:59Z")

    resp = post(fake_api, shopify(secrets, datetime.now(UTC), checkout, topic="checkouts/update"))
    assert resp.status == 400, resp.text
    assert "completed_at is after the accepted range" in resp.json()["reason"]
    assert fakes.nothing_stored()


# -- amounts and quantities --------------------------------------------------------------------------------


def set_in(path: tuple, value):
    def edit(payload):
        node = payload
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return edit


NEGATIVE = [
    ("shopify", shopify, ("total_price",), "-1000.00", "total_price"),
    ("shopify", shopify, ("current_total_price",), "-1.00", "current_total_price"),
    ("shopify", shopify, ("line_items", 0, "price"), "-49.90", "line_items.price"),
    ("shopify", shopify, ("line_items", 0, "quantity"), -2, "line_items.quantity"),
    ("shopify-refund", shopify_refund, ("transactions", 0, "amount"), "-10.00", "transactions.amount"),
    ("woocommerce", woocommerce, ("total",), "-64.80", "total"),
    ("woocommerce", woocommerce, ("line_items", 0, "price"), -41.24, "line_items.price"),
    ("woocommerce", woocommerce, ("line_items", 0, "quantity"), -1, "line_items.quantity"),
    ("magento", magento, ("grand_total",), "-64.8000", "grand_total"),
    ("magento", magento, ("total_refunded",), "-5.0000", "total_refunded"),
    ("magento", magento, ("items", 0, "price"), "-41.2400", "items.price"),
    ("magento", magento, ("items", 0, "qty_ordered"), "-1.0000", "items.qty_ordered"),
    ("segment", segment, ("properties", "total"), -30, "properties.total"),
    ("segment", segment, ("properties", "products", 0, "price"), -15, "properties.products.price"),
    ("segment", segment, ("properties", "products", 0, "quantity"), -2, "properties.products.quantity"),
]


@pytest.mark.parametrize(("source", "build", "path", "value", "field"), NEGATIVE,
                         ids=[f"{n[0]}-{n[4]}" for n in NEGATIVE])
def test_a_negative_amount_or_quantity_is_400_naming_the_field(fake_api, fakes, secrets, source, build, path, value, field):
    resp = post(fake_api, build(secrets, datetime.now(UTC), set_in(path, value)))
    assert resp.status == 400, resp.text
    assert resp.json()["reason"].startswith(field + " "), resp.text
    assert fakes.nothing_stored()


def test_a_segment_revenue_or_product_viewed_price_below_zero_is_400(fake_api, fakes, secrets):
    def revenue(message):
        del message["properties"]["total"]
        message["properties"]["revenue"] = -25
    resp = post(fake_api, segment(secrets, datetime.now(UTC), revenue))
    assert (resp.status, resp.json()["reason"]) == (400, "properties.revenue must not be negative")

    def viewed(message):
        message.update(event="Product Viewed", properties={"product_id": "p1", "price": -1})
    resp = post(fake_api, segment(secrets, datetime.now(UTC), viewed))
    assert (resp.status, resp.json()["reason"]) == (400, "properties.price must not be negative")
    assert fakes.nothing_stored()


def test_zero_is_an_amount_and_a_quantity(fake_api, fakes, secrets):
    def free(payload):
        payload.update(total_price="0.00")
        payload["line_items"][0].update(price="0.00", quantity=0)
    assert post(fake_api, shopify(secrets, datetime.now(UTC), free)).status == 200


def test_woocommerce_refunds_stay_negative_strings_and_lower_the_total(fake_api, fakes, secrets):
    resp = post(fake_api, woocommerce(secrets, datetime.now(UTC), lambda p: p.update(refunds=[{"id": 1, "total": "-20.00"}])))
    assert resp.status == 200, resp.text
    [message] = fakes.queued()
    assert message["detail"]["properties"]["total"] == "44.80"


# -- emails --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("junk", ["range\x00@example.com", "ra\u200bnge@example.com", "range\u202e@example.com",
                                  "range\U0001F600@example.com", "not-an-address"])
def test_a_junk_email_is_dropped_and_the_rest_of_the_event_kept(fake_api, fakes, secrets, junk):
    def traits(message):
        message["context"] = {"traits": {"email": junk}}
    resp = post(fake_api, segment(secrets, datetime.now(UTC), traits))
    assert resp.status == 200, resp.text
    [message] = fakes.queued()
    assert message["detail"]["identity"]["email"] is None
    assert message["detail"]["identity"]["user_id"] == "u-range"
    fakes.deliver()
    profile = bootstrap.repository().find("user#u-range")
    assert profile is not None and profile.email is None and profile.traits["order_count"] == 1
    assert not [a for a in profile.aliases if a.startswith("email#")]


def test_an_event_whose_only_identity_is_a_junk_email_is_ignored(fake_api, fakes, secrets):
    resp = post(fake_api, mandrill(secrets, datetime.now(UTC), lambda e: e["msg"].update(email="ana\u200b@example.com")))
    assert resp.status == 200, resp.text
    assert "no recipient email" in resp.json()["ignored"]
    assert not fakes.queued()


def test_emails_are_stored_lower_cased_and_internationalised_ones_kept(fake_api, fakes, secrets):
    def address(payload):
        payload["email"] = payload["customer"]["email"] = "  MÜLLER@Example.DE "
    assert post(fake_api, shopify(secrets, datetime.now(UTC), address)).status == 200
    [message] = fakes.queued()
    assert message["detail"]["identity"]["email"] == "müller@example.de"


def test_the_api_finds_a_profile_by_any_spelling_of_its_email_and_refuses_junk(fake_api, fakes, secrets):
    def address(payload):
        payload["email"] = payload["customer"]["email"] = "müller@example.de"
    assert post(fake_api, shopify(secrets, datetime.now(UTC), address)).status == 200
    fakes.deliver()
    pid = bootstrap.repository().find("email#müller@example.de").profile_id
    # upper case, spaces, and the ü written as u + a combining diaeresis (NFD, as macOS types it)
    for spelling in ("MÜLLER@EXAMPLE.DE", " müller@example.de ", "mu\u0308ller@example.de"):
        resp = fake_api("GET", "/profiles?email=" + quote(spelling))
        assert (resp.status, resp.json().get("profile_id")) == (200, pid), spelling
    for junk in ("m\u200bller@example.de", "müller\U0001F600@example.de", "müller"):
        resp = fake_api("GET", "/profiles?email=" + quote(junk))
        assert resp.status == 400, junk
        assert "not a valid email address" in resp.json()["message"]


@pytest.mark.parametrize(("old", "previous"), [(" OLD@Example.COM ", "old@example.com"),
                                              ("MU\u0308LLER@example.de", "müller@example.de"),
                                              ("old\u200b@example.com", None)])
def test_a_mailchimp_email_change_normalises_the_old_address(fake_api, fakes, secrets, old, previous):
    """The old address finds the alias to move: it is normalised as the alias was, or dropped."""
    def upemail(form):
        del form["data[id]"], form["data[email]"]
        form.update({"type": "upemail", "data[new_id]": "mc-2", "data[new_email]": "new@example.com",
                     "data[old_email]": old})
    resp = post(fake_api, mailchimp(secrets, datetime.now(UTC), upemail))
    assert resp.status == 200, resp.text
    [message] = fakes.queued()
    assert message["detail"]["properties"]["attributes"].get("previous_email") == previous
