"""Clients of the ESP APIs the sync pushes to (Klaviyo, Mailchimp, signed webhooks)."""
