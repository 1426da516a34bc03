"""Role sets used by the routes (the role matrix test reads the same table)."""

from __future__ import annotations

from ..security import ALL_ROLES, Role

__all__ = [
    "EVERYONE",
    "MANAGERS",
    "ADMINS",
    "CASE_AUTHORS",
    "OPINION_GIVERS",
    "MOVERS",
    "CHAIRS",
    "RECORD_KEEPERS",
    "JOINERS",
]

EVERYONE = ALL_ROLES
ADMINS = frozenset({Role.ADMIN})
MANAGERS = frozenset({Role.ADMIN, Role.COORDINATOR})
CASE_AUTHORS = frozenset({Role.ADMIN, Role.COORDINATOR, Role.CHAIR, Role.SPECIALIST})
MOVERS = frozenset({Role.ADMIN, Role.COORDINATOR, Role.CHAIR})
OPINION_GIVERS = frozenset({Role.CHAIR, Role.SPECIALIST})
# Finalize and amend agreed plans (and then only the chair of the case's board).
CHAIRS = frozenset({Role.CHAIR})
# Search, bulk-export and measure agreed plans (within their own institution).
RECORD_KEEPERS = frozenset({Role.ADMIN, Role.COORDINATOR, Role.RECORDS})
# Join live rooms (when members of the board): everyone but records staff.
JOINERS = frozenset(ALL_ROLES - {Role.RECORDS})
