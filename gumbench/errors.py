"""The one exception type gumbench raises for bad input.

It derives from ValueError so that library users can catch it generically; the
CLI turns it into one line on stderr and exit code 2.
"""

from __future__ import annotations

import math


class GumbenchError(ValueError):
    """Bad input: the message names what was wrong and what is allowed."""


def check_positive(name: str, value: float, *, low: float = 0.0, inclusive: bool = False) -> float:
    """Return ``float(value)`` if it is finite and above ``low`` (or equal, if inclusive)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise GumbenchError(f"{name} must be a number, got {value!r}") from None
    ok = value >= low if inclusive else value > low
    if not (math.isfinite(value) and ok):
        relation = ">=" if inclusive else ">"
        raise GumbenchError(f"{name} must be a finite number {relation} {low:g}, got {value!r}")
    return value


def check_choice(name: str, value, allowed) -> object:
    if value not in allowed:
        raise GumbenchError(f"{name} must be one of {', '.join(map(str, allowed))}; got {value!r}")
    return value
