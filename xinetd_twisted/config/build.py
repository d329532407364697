# -*- test-case-name: tests.test_config_parser -*-
"""
Give the lines of each block their meaning, in reading order: operators,
value counts, repeated attributes, defaults copied when a service block
starts, C{disable = yes}, and the C{enabled}/C{disabled} lists.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple

import attr

from xinetd_twisted.config.attributes import (
    ATTRIBUTES,
    COPIED_AT_PARSE,
    LIST,
    WARN_ERRORS,
    Attribute,
    Settings,
    combine,
)
from xinetd_twisted.config.draft import ServiceDraft
from xinetd_twisted.config.model import Problem, Severity
from xinetd_twisted.config.parser import Block, Broken, Line
from xinetd_twisted.config.values import ParseContext
from xinetd_twisted.records import plainRepr

_UNSEEN = object()

STRICT_SUFFIX = " (an error under --strict)"
"""Added to a warning that strict loading made an error."""


# What the builder says about a line it cannot apply as written.  Only a
# line that draws a word comes here: nothing below runs for a clean line.

NAMEINARGS_LATE = (
    "flags = NAMEINARGS after server_args: xinetd would start the "
    "server with an empty argv (it crashes); we use the first "
    "server_args word as argv[0]"
)
"""The warning for C{flags = NAMEINARGS} after C{server_args}."""

V6ONLY_IN_DEFAULTS = (
    "v6only in defaults: xinetd ignores it; we apply it to services "
    "that do not set v6only"
)
"""The warning for C{v6only} in a block of defaults."""


def _misplaced(name: str, unknown: bool, inDefaults: bool) -> str:
    """
    The warning for attribute C{name}, unknown (when C{unknown}) or not
    allowed in this kind of block.
    """
    if inDefaults:
        message = f"attribute: {name} should not be in default section"
    else:
        message = f"bad service attribute: {name}"
    return message + _suggestion(name, inDefaults) if unknown else message


def _notApplied(line: Line, earlier: Optional[Line]) -> str:
    """
    The warning for a single-valued C{line} set already by C{earlier}
    in its block, or (C{earlier} is L{None}) written with C{+=} or C{-=}.
    """
    if earlier is not None:
        return (
            f"attribute already set: {line.name} (at {earlier.location}); "
            "this line is ignored"
        )
    return f"operator '{line.op}' cannot be used for attribute '{line.name}'"


def _miscounted(
    line: Line, count: int, key: str, inDefaults: bool
) -> Tuple[Severity, str]:
    """
    What to say of C{line}, which has not the C{count} words its
    attribute (stored as C{key}) takes: a warning (the line is ignored),
    or, where ignoring it changes what is bound, an error (fatal in
    defaults).
    """
    message = (
        f"attribute {line.name} expects {count} values and "
        f"{len(line.values)} values were specified"
    )
    if key not in WARN_ERRORS:
        return Severity.WARNING, message + "; line ignored"
    return (
        Severity.FATAL if inDefaults else Severity.ERROR,
        message + " (xinetd would ignore the line and bind every address)",
    )


def _unparsed(line: Line, error: ValueError, inDefaults: bool) -> Tuple[Severity, str]:
    """
    What to say of C{line}, whose words did not parse: fatal in
    defaults (xinetd exits), else an error that drops the service.
    """
    if inDefaults:
        return (
            Severity.FATAL,
            f"{error}; a fatal error in the default section (xinetd exits)",
        )
    return (
        Severity.ERROR,
        f"{error}; Error parsing attribute {line.name} - DISABLING SERVICE",
    )


def _suggestion(name: str, inDefaults: bool) -> str:
    """
    The C{(did you mean X?)} part of a message about an unknown attribute.
    """
    import difflib  # only for a misspelt attribute

    known = [
        row.name
        for row in ATTRIBUTES.values()
        if (row.defaultsCount is not None if inDefaults else row.inService)
    ]
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


@plainRepr
@attr.s(auto_attribs=True, repr=False)
class Builder:
    """
    Applies blocks in reading order.

    @ivar defaults: the one defaults object every file writes into.
    @ivar drafts: services that survived parsing.
    @ivar problems: what went wrong, in order.
    @ivar fatal: a defaults value failed to parse.
    @ivar dropped: ids of services dropped by an error.
    """

    ctx: ParseContext
    strict: bool = False
    defaults: Settings = attr.ib(factory=Settings)
    drafts: List[ServiceDraft] = attr.ib(factory=list)
    problems: List[Problem] = attr.ib(factory=list)
    fatal: bool = False
    dropped: List[str] = attr.ib(factory=list)
    droppedFiles: List[str] = attr.ib(factory=list)
    _inDefaults: bool = False
    _strictFailed: bool = False
    _parsed: Dict[Tuple[Any, Tuple[str, ...]], Any] = attr.ib(factory=dict)
    _shared: Dict[Any, Any] = attr.ib(factory=dict)
    plainLines: bool = True
    _plain: PlainLines = attr.ib(init=False)

    def __attrs_post_init__(self) -> None:
        self._plain = PlainLines(self.ctx, self._parse)

    def _parse(self, row: Attribute, values: Tuple[str, ...]) -> Any:
        """
        C{row.parse(values)}, once per parser and distinct words in this
        load: the parsers are pure (users, groups and names are looked up
        once per load anyway) and give immutable values.  A value that
        drew a remark or failed is parsed again each time, to say so again.

        @raise ValueError: the words do not parse.
        """
        key = (row.parse, values)
        value = self._parsed.get(key, _UNSEEN)
        if value is _UNSEEN:
            value = row.parse(values, self.ctx)
            if not self.ctx.warnings:
                self._parsed[key] = value
        return value

    def _say(self, severity, location, message, service, attribute=None) -> None:
        if self.strict and severity is Severity.WARNING:
            # Strict: the warning costs what an error costs where it is.
            severity = Severity.FATAL if self._inDefaults else Severity.ERROR
            message += STRICT_SUFFIX
            self._strictFailed = True
            if self._inDefaults:
                self.fatal = True
        self.problems.append(Problem(location, severity, message, service, attribute))

    def dropService(self, serviceId: str, path: str) -> None:
        """
        Record that the service C{serviceId}, defined in C{path}, was
        dropped because of an error.
        """
        self.dropped.append(serviceId)
        self.droppedFiles.append(path)

    def add(self, block: Block) -> None:
        """
        Apply one block.
        """
        if block.kind == "defaults":
            if block.duplicateDefaults:
                self._say(
                    Severity.ERROR,
                    block.location,
                    "only 1 defaults entry is allowed. This entry will be ignored",
                    "defaults",
                )
                return
            self._apply(block, self.defaults, True)
            return
        settings = Settings()
        settings.copyFrom(self.defaults, COPIED_AT_PARSE)
        outcome = self._apply(block, settings, False)
        if outcome == "keep":
            self.drafts.append(ServiceDraft.pack(block, settings, self._shared))
        elif outcome == "drop":
            self.dropService(settings.values.get("id", block.name), block.location.path)

    def _apply(self, block: Block, settings: Settings, inDefaults: bool) -> str:
        """
        Apply a block's lines to C{settings}.

        @return: C{"keep"}, C{"drop"} (an error) or C{"discard"}
            (C{disable = yes}: thrown away without a word).
        """
        service = block.name
        failed = False
        self._inDefaults = inDefaults
        self._strictFailed = False
        plain = self._plain
        seenLines = plain.lines[inDefaults]
        values, lines, specified = settings.values, settings.lines, settings.specified
        for item in block.lines:
            if item.__class__ is Line:
                # A line that only sets its value, as one applied before
                # in a block of this kind: set it (unless this block set
                # it already: the whole path says so).
                seen = seenLines.get(item[:3])
                if seen is None:
                    seen = plain.shaped(item, inDefaults)  # type: ignore[arg-type]
                if seen is not None and seen[0] not in specified:
                    key = seen[0]
                    values[key] = seen[1]
                    lines[key] = item
                    specified.add(key)
                    continue
            elif isinstance(item, Broken):
                self._say(
                    Severity.ERROR, item.location, item.message, service, item.attribute
                )
                return "drop"
            status = self._line(item, settings, inDefaults, service)
            if status == "failed" or self._strictFailed:
                failed = True
            if item.name == "disable" and (failed or settings.values.get("disable")):
                return "drop" if failed else "discard"
        return "drop" if failed else "keep"

    def _line(
        self, line: Line, settings: Settings, inDefaults: bool, service: str
    ) -> str:
        row = ATTRIBUTES.get(line.name)
        if row is None or not (
            row.defaultsCount is not None if inDefaults else row.inService
        ):
            message = _misplaced(line.name, row is None, inDefaults)
            self._sayAt(line, service, Severity.WARNING, message)
            return "ignored"
        count = row.defaultsCount if inDefaults else row.count
        assert count is not None
        op = line.op
        key, specified = row.key, settings.specified
        if count != LIST:
            if key in specified or op != "=":
                earlier = settings.lines[key] if key in specified else None
                message = _notApplied(line, earlier)
                self._sayAt(line, service, Severity.WARNING, message)
                return "ignored"
        elif inDefaults and op == "=":
            op = "+="  # xinetd: in defaults, = on a list attribute adds
        if count > 0 and len(line.values) != count:
            severity, message = _miscounted(line, count, key, inDefaults)
            self._sayAt(line, service, severity, message)
            if severity is Severity.WARNING:
                return "ignored"
            return self._failed(inDefaults)
        ctx = self.ctx
        if ctx.warnings:
            ctx.warnings = []
        try:
            if key == "env" and op == "-=":
                raise ValueError("operator -= cannot be used with env")
            if inDefaults and key == "log_type" and "log_type" in specified:
                raise ValueError("Cannot set more than one log_type attribute")
            value: Any = self._parse(row, line.values)
        except ValueError as e:
            self._sayAt(line, service, *_unparsed(line, e, inDefaults))
            return self._failed(inDefaults)
        for remark in ctx.warnings:
            self._sayAt(line, service, Severity.WARNING, remark)
        if self.plainLines and count != LIST and not ctx.warnings:
            self._plain.remember(line, row, value, inDefaults)
        if key == "flags" and "NAMEINARGS" in value and "server_args" in specified:
            self._sayAt(line, service, Severity.WARNING, NAMEINARGS_LATE)
        if inDefaults and key == "v6only":
            self._sayAt(line, service, Severity.WARNING, V6ONLY_IN_DEFAULTS)
        if count == LIST and key != "log_type":
            value = combine(settings.values.get(key), value, op)
        settings.values[key] = value
        settings.lines[key] = line
        specified.add(key)
        return "applied"

    def _sayAt(
        self, line: Line, service: str, severity: Severity, message: str
    ) -> None:
        self._say(severity, line.location, message, service, line.name)

    def _failed(self, inDefaults: bool) -> str:
        if inDefaults:
            self.fatal = True
        return "failed"

    def activeDrafts(self) -> Tuple[ServiceDraft, ...]:
        """
        The drafts left after C{enabled}/C{disabled} from defaults (matched
        by id, case-insensitively).
        """
        return enabledDrafts(self.defaults, self.drafts)


def enabledDrafts(
    defaults: Settings, drafts: List[ServiceDraft]
) -> Tuple[ServiceDraft, ...]:
    """
    The C{drafts} that C{enabled} and C{disabled} in C{defaults} keep
    (matched by id, case-insensitively), in their order.
    """
    enabled: Optional[Tuple[str, ...]] = defaults.values.get("enabled")
    disabled: Tuple[str, ...] = defaults.values.get("disabled", ())
    kept = []
    for draft in drafts:
        key = draft.serviceId.lower()
        if enabled is not None and key not in enabled:
            continue
        if key in disabled:
            continue
        kept.append(draft)
    return tuple(kept)


class PlainLines:
    """
    What a load learnt of the lines that only set their value (they draw
    no word, and nothing else in the block changes what they do): each
    such line, and each attribute such a line was written for with that
    operator and that many words.  A line met again, or another value for
    such an attribute, is set without going through every rule.

    @ivar lines: for blocks of services, then of defaults: C{(name, op,
        values)} of a line to the C{(key, value)} it sets.
    """

    def __init__(self, ctx: ParseContext, parse: Callable[[Attribute, Any], Any]):
        self._ctx = ctx
        self._parse = parse
        self.lines: Tuple[Dict[Any, Any], Dict[Any, Any]] = ({}, {})
        self._shapes: Tuple[Dict[Any, Any], Dict[Any, Any]] = ({}, {})

    def shaped(self, line: Line, inDefaults: bool) -> Optional[Tuple[str, Any]]:
        """
        C{(key, value)} for a line not met before that only sets its value
        (in a block of defaults, when C{inDefaults}), or L{None} when every
        rule must see it: its attribute is new in this form, its words do
        not parse or draw a remark.
        """
        shape = self._shapes[inDefaults].get((line[0], line[1], len(line[2])))
        if shape is None:
            return None
        ctx = self._ctx
        if ctx.warnings:
            ctx.warnings = []
        try:
            value = self._parse(shape[0], line[2])
        except ValueError:
            return None
        if ctx.warnings:
            return None
        return shape[1], value

    def remember(
        self, line: Line, row: Attribute, value: Any, inDefaults: bool
    ) -> None:
        """
        C{line}, set once in a block by every rule, gave C{value} and drew
        no remark: remember it, unless what it does depends on more than
        its words (C{disable}, C{v6only} in defaults, C{flags} with
        C{NAMEINARGS}).
        """
        key = row.key
        if key == "disable" or (inDefaults and key == "v6only"):
            return
        if key == "flags":
            if "NAMEINARGS" not in value:
                self.lines[inDefaults][line[:3]] = (key, value)
            return
        self._shapes[inDefaults][(line[0], line[1], len(line[2]))] = (row, key)
        self.lines[inDefaults][line[:3]] = (key, value)
