"""The one error type the partner kit raises for problems a partner can fix."""

from __future__ import annotations


class PartnerKitError(ValueError):
    """A raw extract, key or option that cannot be used; the message names the file,
    the row or column, and what to do."""
