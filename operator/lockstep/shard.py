"""Which FeatureReleases and DatabaseMigrations one operator instance owns (sharding).

An instance is given namespaces (kopf watches only those: the API server filters) and a label
selector in Kubernetes' syntax (`lockstep.dev/shard=a`, `tier in (gold,silver)`, `!legacy`),
turned into kopf's label filters on every handler of lockstep's own kinds (kopf filters as
events arrive: every instance still receives every event of the kinds it watches). Instances
must own disjoint sets of objects.

An instance with a label selector puts its own finalizer on its objects: kopf removes its
finalizer from objects that no handler of the instance matches, so two instances sharing one
finalizer would take it off each other's objects without end.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import GROUP

if TYPE_CHECKING:
    import kopf

_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_PREFIX = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_KEY = re.compile(rf"^({_PREFIX}/)?{_NAME}$")
_VALUE = re.compile(rf"^({_NAME})?$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_SET = re.compile(r"^(?P<key>\S+)\s+(?P<op>in|notin)\s+\((?P<values>[^()]*)\)$")
_BINARY = re.compile(r"^(?P<key>[^!=\s]+)\s*(?P<op>==|=|!=)\s*(?P<value>\S*)$")


@dataclass(frozen=True)
class Requirement:
    """One term of a label selector."""

    key: str
    operator: str  # =, !=, in, notin, exists, !
    values: frozenset[str] = frozenset()

    def test(self, value: str | None) -> bool:
        """Does a label `key` with `value` (None: no such label) meet this term?"""
        if self.operator == "exists":
            return value is not None
        if self.operator == "!":
            return value is None
        if self.operator in ("=", "in"):
            return value in self.values
        return value not in self.values  # != and notin also match objects without the label


def _split(text: str) -> list[str]:
    """Split at the commas that are not inside parentheses."""
    terms, depth, start = [], 0, 0
    for index, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0 or depth > 1:
            raise ValueError("unbalanced parentheses")
        if char == "," and depth == 0:
            terms.append(text[start:index])
            start = index + 1
    if depth:
        raise ValueError("unbalanced parentheses")
    return [*terms, text[start:]]


def _checked(key: str, values: list[str]) -> tuple[str, frozenset[str]]:
    if not _KEY.match(key):
        raise ValueError(f"invalid label key {key!r}")
    for value in values:
        if not _VALUE.match(value):
            raise ValueError(f"invalid label value {value!r} for {key}")
    return key, frozenset(values)


def parse_selector(text: str) -> tuple[Requirement, ...]:
    """Parse a label selector (Kubernetes' syntax); ValueError says what is wrong."""
    if not text.strip():
        return ()
    requirements = []
    for raw in _split(text.strip()):
        term = raw.strip()
        if not term:
            raise ValueError(f"empty term in label selector {text!r}")
        if match := _SET.match(term):
            values = [v.strip() for v in match["values"].split(",")]
            if values == [""]:
                raise ValueError(f"{term!r}: a set needs at least one value")
            key, checked = _checked(match["key"], values)
            requirements.append(Requirement(key, match["op"], checked))
        elif match := _BINARY.match(term):
            operator = "=" if match["op"] == "==" else match["op"]
            key, checked = _checked(match["key"], [match["value"]])
            requirements.append(Requirement(key, operator, checked))
        elif term.startswith("!"):
            key, _ = _checked(term[1:].strip(), [])
            requirements.append(Requirement(key, "!"))
        else:
            key, _ = _checked(term, [])
            requirements.append(Requirement(key, "exists"))
    return tuple(requirements)


def matches(requirements: tuple[Requirement, ...], labels: Mapping[str, str]) -> bool:
    return all(r.test(labels.get(r.key)) for r in requirements)


def kopf_labels(requirements: tuple[Requirement, ...]) -> dict[str, Any]:
    """The selector as kopf's `labels=` filter: a value, PRESENT, ABSENT or a callable per key."""
    import kopf

    by_key: dict[str, list[Requirement]] = {}
    for requirement in requirements:
        by_key.setdefault(requirement.key, []).append(requirement)
    labels: dict[str, Any] = {}
    for key, terms in by_key.items():
        only = terms[0] if len(terms) == 1 else None
        if only is not None and only.operator == "=":
            labels[key] = next(iter(only.values))
        elif only is not None and only.operator == "exists":
            labels[key] = kopf.PRESENT
        elif only is not None and only.operator == "!":
            labels[key] = kopf.ABSENT
        else:
            labels[key] = _all_of(tuple(terms))
    return labels


def _all_of(terms: tuple[Requirement, ...]) -> Callable[..., bool]:
    def check(value: str | None, **_: Any) -> bool:
        return all(term.test(value) for term in terms)

    return check


@dataclass(frozen=True)
class Shard:
    """What one operator instance owns, and the finalizer it marks its objects with."""

    instance: str = "lockstep"
    namespaces: tuple[str, ...] = ()
    selector: str = ""

    def __post_init__(self) -> None:
        if not _DNS_LABEL.match(self.instance) or len(self.instance) > 50:
            raise ValueError(
                f"invalid instance name {self.instance!r}: lowercase letters, digits and '-', "
                "at most 50 characters"
            )
        for namespace in self.namespaces:
            if not _DNS_LABEL.match(namespace):
                raise ValueError(f"invalid namespace {namespace!r}: give exact namespace names")
        parse_selector(self.selector)

    @property
    def requirements(self) -> tuple[Requirement, ...]:
        return parse_selector(self.selector)

    def finalizer(self, default: str) -> str:
        """The shared finalizer, or with a label selector `<default>-<instance>`."""
        return f"{default}-{self.instance}" if self.requirements else default

    def describe(self) -> str:
        where = ", ".join(self.namespaces) if self.namespaces else "all namespaces"
        return f"{where}; labels: {self.selector or 'any'}"

    def restrict(self, registry: kopf.OperatorRegistry) -> None:
        """Add the selector to the label filters of every handler of lockstep's own kinds."""
        labels = kopf_labels(self.requirements)
        if not labels:
            return
        # kopf has no public way to change a registered handler's filters; its registries
        # keep them in `_handlers` lists of frozen dataclasses.
        parts = (registry._indexing, registry._watching, registry._spawning, registry._changing)
        for part in parts:
            handlers: list[Any] = part._handlers
            for index, handler in enumerate(handlers):
                if handler.selector is None or handler.selector.group != GROUP:
                    continue
                own = dict(handler.labels or {})
                clash = set(own) & set(labels)
                if clash:
                    raise ValueError(f"{handler.id} already filters on {', '.join(clash)}")
                handlers[index] = dataclasses.replace(handler, labels={**own, **labels})
