"""Outbound: one module per ESP destination (Klaviyo, Mailchimp, signed webhooks) that pushes
segment memberships and traits out, with the same shape as :mod:`segmentation.sources`.
``config.py`` reads the destinations file (docs/destinations.md); the ESP sync itself is to come."""
