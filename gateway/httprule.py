"""``google.api.http`` path templates: parsed and compiled once, matched per request.

The grammar is the one of ``google/api/http.proto`` (and grpc-gateway's ``internal/httprule``)::

    Template = "/" Segments [ Verb ] ;
    Segments = Segment { "/" Segment } ;
    Segment  = "*" | "**" | LITERAL | Variable ;
    Variable = "{" FieldPath [ "=" Segments ] "}" ;
    FieldPath = IDENT { "." IDENT } ;
    Verb     = ":" LITERAL ;

A compiled :class:`Template` matches a request path with or without its trailing slash (the
Substra API always sends one; the annotations leave it out) and returns the variables bound by
field path, percent-decoded.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass, field

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")
_LITERAL = re.compile(r"[^/{}*:=]+\Z")


class TemplateError(ValueError):
    """The template does not follow the ``google.api.http`` grammar."""


@dataclass(frozen=True)
class Template:
    """One compiled path template."""

    source: str
    variables: tuple[str, ...]
    literal_segments: int
    segments: int
    verb: str
    _regex: re.Pattern = field(repr=False, compare=False)
    _groups: tuple[str, ...] = field(repr=False, compare=False)

    def match(self, path: str) -> dict[str, str] | None:
        """The bound variables (field path → decoded value) when ``path`` matches, else None."""
        found = self._regex.match(path)
        if found is None:
            return None
        return {
            name: urllib.parse.unquote(found.group(group))
            for name, group in zip(self.variables, self._groups, strict=True)
        }

    @property
    def specificity(self) -> tuple[int, int]:
        """Sort key: templates with more literal segments win over variables at the same place."""
        return (self.literal_segments, self.segments)

    def openapi_path(self) -> str:
        """The template as an OpenAPI path (``/task/{key}/``), with the trailing slash clients use."""
        path = re.sub(r"\{([^}=]+)(=[^}]*)?\}", r"{\1}", self.source.split(":")[0] if self.verb else self.source)
        return path.rstrip("/") + "/"


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.pos = 0
        self.variables: list[str] = []
        self.literals = 0
        self.count = 0

    def fail(self, why: str) -> TemplateError:
        return TemplateError(f"invalid template {self.source!r} at {self.pos}: {why}")

    def peek(self) -> str:
        return self.source[self.pos] if self.pos < len(self.source) else ""

    def take(self, char: str) -> None:
        if self.peek() != char:
            raise self.fail(f"expected {char!r}")
        self.pos += 1

    def until(self, stops: str) -> str:
        start = self.pos
        while self.pos < len(self.source) and self.source[self.pos] not in stops:
            self.pos += 1
        return self.source[start : self.pos]

    def template(self) -> tuple[str, str]:
        self.take("/")
        pattern = self.segments(top=True)
        verb = ""
        if self.peek() == ":":
            self.pos += 1
            verb = self.until("")
            if not _LITERAL.match(verb):
                raise self.fail("invalid verb")
        if self.pos != len(self.source):
            raise self.fail("unexpected character")
        return pattern, verb

    def segments(self, top: bool = False, nested: bool = False) -> str:
        parts = [self.segment(top, nested)]
        while self.peek() == "/":
            self.pos += 1
            parts.append(self.segment(top, nested))
        return "/".join(parts)

    def segment(self, top: bool, nested: bool) -> str:
        if top:
            self.count += 1
        char = self.peek()
        if char == "*":
            self.pos += 1
            if self.peek() == "*":
                self.pos += 1
                return ".+"
            return "[^/]+"
        if char == "{":
            if nested:
                raise self.fail("nested variable")
            return self.variable()
        literal = self.until("/:}" if nested else "/:")
        if not _LITERAL.match(literal):
            raise self.fail("invalid literal")
        if top:
            self.literals += 1
        return re.escape(literal)

    def variable(self) -> str:
        self.take("{")
        name = self.until("=}")
        if not _IDENT.match(name):
            raise self.fail("invalid field path")
        if name in self.variables:
            raise self.fail(f"variable {name!r} bound twice")
        pattern = "[^/]+"
        if self.peek() == "=":
            self.pos += 1
            pattern = self.segments(nested=True)
        self.take("}")
        self.variables.append(name)
        return f"(?P<v{len(self.variables) - 1}>{pattern})"


def compile_template(source: str) -> Template:
    """Parse and compile ``source``; raises :class:`TemplateError` when it is malformed."""
    parser = _Parser(source)
    pattern, verb = parser.template()
    suffix = f":{re.escape(verb)}" if verb else ""
    regex = re.compile(f"^/{pattern}{suffix}/?$")
    return Template(
        source=source,
        variables=tuple(parser.variables),
        literal_segments=parser.literals,
        segments=parser.count,
        verb=verb,
        _regex=regex,
        _groups=tuple(f"v{i}" for i in range(len(parser.variables))),
    )
