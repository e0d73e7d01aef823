"""Public JSON shapes (docs/api.md)."""

from __future__ import annotations

from .domain.profile import Profile
from .domain.profile import iso as _iso  # tolerant: a stored time past year 9999 shows as 9999-12-31T23:59:59Z


def profile_view(profile: Profile) -> dict:
    """The profile as the API shows it: the stored result of its last evaluation."""
    consent = profile.email_consent
    return {
        "profile_id": profile.profile_id,
        "email": profile.email,
        "segments": list(profile.segments),
        "traits": dict(profile.traits),
        "consent": {
            "email": consent.state if consent else None,
            "email_updated_at": _iso(consent.updated) if consent else None,
        },
        "evaluated_at": _iso(profile.evaluated_at),
        "next_due_at": _iso(profile.next_due_at),
        "version": profile.version,
    }


def history_view(changes: list[dict]) -> list[dict]:
    """Membership history entries as the API shows them (times as ISO 8601)."""
    return [{**c, "at": _iso(c["at"])} for c in changes]


def export_view(profile: Profile) -> dict:
    """Everything stored about the person (GDPR access, CCPA right to know, Shopify data requests).

    Email messages are kept only as hashes of the provider's ids, so none appear here."""
    consent = profile.email_consent
    return {
        **profile_view(profile),
        "emails": list(profile.emails),
        "phone": profile.phone,
        "identities": list(profile.aliases),
        "names": {"first_name": profile.first_name, "last_name": profile.last_name},
        "tags": list(profile.tags),
        "attributes": dict(profile.attributes),
        "consent_history": [{"at": _iso(at), "state": state} for at, state in (consent.log if consent else [])],
        "orders": [
            {"order_id": oid, "placed_at": _iso(o.at), "total": str(o.total), "status": o.status, "categories": o.cats}
            for oid, o in sorted(profile.orders.items(), key=lambda kv: kv[1].at)
        ],
        "checkouts": [{"started_at": _iso(c.started), "completed": c.completed} for c in profile.checkouts.values()],
        "email_messages": [
            {"delivered_at": _iso(m.d), "opened_at": _iso(m.o), "clicked_at": _iso(m.c)} for m in profile.messages.values()
        ],
        "browsing": {
            signal: [{"at": _iso(t), "category": c} for t, c in zip(cols.t, cols.c, strict=True)]
            for signal, cols in profile.browse.items()
        },
        "first_seen_at": _iso(profile.first_seen_at),
    }
