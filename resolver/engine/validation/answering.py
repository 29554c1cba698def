"""What a verdict does to the answer a client gets (RFC 4035 3.2, RFC 6840 5.7-5.9, RFC 8914),
as Unbound answers: the AD bit, SERVFAIL for bogus data, and the Extended DNS Error.

One plain function, so that recursive and forwarding mode apply the same rules:

- validation "off": the data as it came, never AD;
- secure: AD, when the client set AD or DO (RFC 6840 5.7-5.8), with CD too (Unbound
  validates a CD query all the same and sets AD on secure data);
- bogus: with "on", SERVFAIL carrying the verdict's EDE (6 when it has none); with
  "permissive", or when the client set CD (RFC 4035 3.2.2: it validates for itself), the
  data as it came without AD; logged as bogus unless CD was set;
- insecure and indeterminate: the answer without AD; an insecure verdict reached through an
  unsupported algorithm or digest (EDE 1, 2) or too many NSEC3 iterations (EDE 27) carries
  that EDE, as information (issue 19 asks for it; Unbound 1.17 attaches none there).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from resolver.engine.validation.outcome import EDE_DNSSEC_BOGUS, Outcome, Security

__all__ = ["Answering", "Mode", "answering"]

Mode = Literal["on", "permissive", "off"]


@dataclass(frozen=True, slots=True)
class Answering:
    """How to answer: ``ad`` the AD bit; ``servfail`` to answer SERVFAIL instead of the data;
    ``ede`` the Extended DNS Error to attach (None: none); ``log_bogus`` when the verdict
    was bogus (logged once per zone and reason by the caller)."""

    ad: bool = False
    servfail: bool = False
    ede: int | None = None
    log_bogus: bool = False


def answering(outcome: Outcome, *, mode: Mode, ad: bool, do: bool, cd: bool) -> Answering:
    """The answer's flags for ``outcome`` under ``mode``, for a query with the AD, DO and CD
    bits given."""
    if mode == "off":
        return Answering()
    if outcome.security is Security.SECURE:
        return Answering(ad=ad or do)
    if outcome.security is Security.BOGUS:
        if cd:
            return Answering()
        if mode == "permissive":
            return Answering(log_bogus=True)
        return Answering(servfail=True, ede=outcome.ede or EDE_DNSSEC_BOGUS, log_bogus=True)
    if outcome.security is Security.INSECURE:
        return Answering(ede=outcome.ede)
    return Answering()
