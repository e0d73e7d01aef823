"""Public JSON shapes (design.md §3.3)."""

from __future__ import annotations

from .domain.profile import Profile, from_epoch


def _iso(ts: int | None) -> str | None:
    dt = from_epoch(ts)
    return None if dt is None else dt.isoformat().replace("+00:00", "Z")


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
