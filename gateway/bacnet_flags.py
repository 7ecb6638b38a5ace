"""What a BACnet object says of its own value: its ``statusFlags`` (in-alarm, fault,
overridden, out-of-service) and ``reliability``, turned into the point's quality; pure, no
I/O, no bacpypes3 types (the adapter hands plain bits and the reliability's name).

A value the device itself calls unreliable is not a good value: a fault flag, an
out-of-service flag or a reliability other than ``no-fault-detected`` make the point bad
(published without a value, as a point that could not be read). In-alarm and overridden
leave the value good: the value is what the device means, the flag only says more of it.
Every flag set, and a reliability other than no-fault-detected, are named in the
condition's ``flags`` (BACnet's own words, comma-separated: ``fault,open-loop``), which the
gateway publishes beside the quality. An object without a reliability property (it is
optional) is judged by its flags alone; one whose flags could not be read is judged by its
reliability alone."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

FLAG_NAMES = ("in-alarm", "fault", "overridden", "out-of-service")
BAD_FLAGS = frozenset({"fault", "out-of-service"})
NO_FAULT = "no-fault-detected"


@dataclass(frozen=True, slots=True)
class Condition:
    """A point's condition as its object reports it: ``bad`` makes its quality bad;
    ``flags`` names what is set ("" when nothing is)."""

    bad: bool
    flags: str


NORMAL = Condition(bad=False, flags="")


def condition(status_flags: Sequence[int] | None, reliability: str | None) -> Condition:
    """The condition of a point from its object's status flags (four bits in BACnet order,
    None: not read) and reliability (its enumeration name, None: absent or not read)."""
    unreliable = reliability is not None and reliability != NO_FAULT
    bits = list(status_flags or ())
    words = [name for i, name in enumerate(FLAG_NAMES)
             if (i < len(bits) and bits[i]) or (unreliable and name == "fault")]
    if unreliable:
        words.append(str(reliability))
    if not words:
        return NORMAL
    return Condition(bad=bool(BAD_FLAGS.intersection(words)), flags=",".join(words))
