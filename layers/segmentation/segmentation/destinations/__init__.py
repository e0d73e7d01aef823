"""Outbound: one module per ESP destination (Klaviyo, Mailchimp, signed webhooks) that pushes
segment memberships and traits out, with the same shape as :mod:`segmentation.sources`.
Empty until the ESP sync lands."""
