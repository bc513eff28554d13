"""Plain classes with value semantics, for the lint's many small records.

The lint's records are plain classes with `__slots__` and a written-out `__init__`, on these
bases: equality and repr by fields (in `__slots__` order), and a hash for the records that
are never changed after they are made. A dataclass would give the same, but building one
costs about 0.6 ms when its module is imported, and `lockstep lint` is a short-lived process
that imports a few dozen of them (with the dataclasses module itself, a fifth of a first
run's time on a project's migrations).
"""

from __future__ import annotations

from typing import ClassVar


class Record:  # noqa: PLW1641  (no hash: a Record may change; FrozenRecord has one)
    """Equality and repr from the fields in `__slots__`; not hashable (it may change)."""

    __slots__: ClassVar[tuple[str, ...]] = ()

    def fields(self) -> tuple[object, ...]:
        """The values of the fields, in order."""
        return tuple([getattr(self, name) for name in self.__slots__])

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, Record)
        return self.fields() == other.fields()

    def __repr__(self) -> str:
        values = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({values})"


class FrozenRecord(Record):
    """A record that is not changed once made: hashable by its fields."""

    __slots__ = ()

    def __hash__(self) -> int:
        return hash(self.fields())
