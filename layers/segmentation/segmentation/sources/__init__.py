"""Inbound: one module per provider (verify + normalise a webhook into canonical events), and the
shared base every one of them uses: :mod:`.request` (the delivery and what a parse returns),
:mod:`.fields` (strict field readers) and :mod:`.errors` (one exception per HTTP answer).

Each provider module exposes ``parse(request, secrets, now)``; :data:`MODULES` maps a route's
``{source}`` to its module (Segment's is ``segment_tracking``, so it is never mistaken for the
segments themselves).
"""

MODULES = {
    "shopify": "shopify", "woocommerce": "woocommerce", "magento": "magento", "klaviyo": "klaviyo",
    "mailchimp": "mailchimp", "mandrill": "mandrill", "sendgrid": "sendgrid", "segment": "segment_tracking",
}
