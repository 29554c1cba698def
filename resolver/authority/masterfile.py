"""Master files (RFC 1035 section 5) read into plain records; the one importer of dnspython.

dnspython's tokenizer and rdata readers do the lexical work and every type's presentation
format (escapes, quoted strings, parentheses, comments, ``@`` and relative names in rdata,
RFC 3597 ``\\#``). This module reads the entries around them itself, so that each record keeps
the file and line it came from and every error is one line in our words: directives
(``$ORIGIN``, ``$TTL``, ``$INCLUDE``, ``$GENERATE``), the owner, TTL and class in either order,
and the type. Records leave as wire-format rdata; nothing of dnspython escapes this module.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.tokenizer
import dns.ttl

from resolver.errors import ConfigError

__all__ = ["DEFAULT_TTL", "MAX_TTL", "Entry", "read_master"]

DEFAULT_TTL = 3600
"""The TTL of records that give none when no ``$TTL`` came before (NSD's default)."""

MAX_TTL = 2**31 - 1
"""The largest TTL a zone may hold (RFC 2181 section 8)."""

_MAX_INCLUDE_DEPTH = 8  # nested $INCLUDEs; deeper is taken for a file including itself
_MAX_GENERATED = 65536  # records one $GENERATE may produce
_CLASS_IN = dns.rdataclass.IN
_GENERATE_RANGE = re.compile(r"^(\d+)-(\d+)(?:/(\d+))?$")
_GENERATE_MODIFIER = re.compile(r"^\{(-?\d+)(?:,(\d+)(?:,([doxXnN]))?)?\}")


@dataclass(frozen=True, slots=True)
class Entry:
    """One resource record as read from a master file.

    ``owner`` is the absolute name's labels (leftmost first, root excluded) with the case as
    written; ``rdata`` is the wire form, names uncompressed and case kept; ``canonical`` the
    RFC 4034 6.2 form, with which duplicates are recognized; ``where`` is ``file:line``.
    """

    owner: tuple[bytes, ...]
    rtype: int
    ttl: int
    rdata: bytes
    canonical: bytes
    where: str
    owner_text: str = field(compare=False)
    type_text: str = field(compare=False)


@dataclass(slots=True)
class _Context:
    """What a file's entries inherit from the lines before them."""

    origin: dns.name.Name | None
    default_ttl: int | None = None
    previous_owner: dns.name.Name | None = None


def read_master(
    text: str, *, source: str, origin: str | None = None, directory: Path | None = None
) -> list[Entry]:
    """Read master-file ``text`` into entries, in file order (included files in place).

    ``origin`` is the starting ``$ORIGIN``; ``directory`` is where relative ``$INCLUDE`` paths
    are found (the current directory if None). Raises ConfigError with field ``source:line``
    naming the line at fault.
    """
    start = _name(origin, dns.name.root, f"{source}:1") if origin is not None else None
    entries: list[Entry] = []
    _read(text, source, _Context(start), directory or Path("."), entries, depth=0)
    return entries


class _Tokenizer(dns.tokenizer.Tokenizer):
    """dnspython's tokenizer, also telling the line of the last token read.

    Its own line count has already moved on when a token ends at a newline; errors must name
    the line of the token at fault, e.g. a bad field on the last line of a multi-line SOA.
    """

    def __init__(self, text: str, filename: str) -> None:
        super().__init__(text, filename)
        self.last_line = 1
        self._previous_line = 1
        self._ungotten_line = 1

    def get(self, want_leading: bool = False, want_comment: bool = False) -> dns.tokenizer.Token:
        replayed = self.ungotten_token is not None
        token = super().get(want_leading, want_comment)
        self._previous_line = self.last_line
        if replayed:
            self.last_line = self._ungotten_line
        else:
            ended = token.is_eol() or self.ungotten_char == "\n"
            self.last_line = self.line_number - 1 if ended else self.line_number
        return token

    def unget(self, token: dns.tokenizer.Token) -> None:
        super().unget(token)
        self._ungotten_line = self.last_line
        self.last_line = self._previous_line


def _read(
    text: str, source: str, ctx: _Context, directory: Path, out: list[Entry], depth: int
) -> None:
    tok = _Tokenizer(text, source)
    try:
        for first in _entries(tok, len(text) + 1):
            _entry(first, tok, ctx, directory, out, depth)
    except dns.exception.SyntaxError as exc:
        # The tokenizer's own complaints: an unbalanced parenthesis or an open quote.
        raise ConfigError(_where(tok), _lexical(str(exc))) from exc


def _entries(tok: _Tokenizer, most: int) -> Iterator[dns.tokenizer.Token]:
    """Yield the first token of each entry: its owner, a directive, or the whitespace that
    stands for the previous owner. Each pass consumes at least one of the text's characters,
    so ``most`` (its length plus one) passes are enough."""
    for _ in range(most):
        token = tok.get(want_leading=True)
        if token.is_eof():
            return
        if token.is_eol():
            continue
        if token.is_whitespace():
            following = tok.get()
            if following.is_eol_or_eof():
                continue
            tok.unget(following)
        yield token
    raise AssertionError("the tokenizer stopped consuming the text")


def _entry(
    first: dns.tokenizer.Token,
    tok: _Tokenizer,
    ctx: _Context,
    directory: Path,
    out: list[Entry],
    depth: int,
) -> None:
    where = _where(tok)
    if first.is_identifier() and first.value.startswith("$"):
        _directive(first.value.upper(), tok, where, ctx, directory, out, depth)
        return
    if first.is_whitespace():
        if ctx.previous_owner is None:
            raise ConfigError(where, "the first record has no owner name")
        owner = ctx.previous_owner
    else:
        owner = _name(first.value, ctx.origin, where)
    if ctx.origin is None:
        # No $ORIGIN: the first owner (absolute, as _name checked) is the origin, as the SOA's
        # owner is in a file that starts with its SOA.
        ctx.origin = owner
    ctx.previous_owner = owner
    out.append(_record(tok, owner, ctx, where))


def _record(tok: _Tokenizer, owner: dns.name.Name, ctx: _Context, where: str) -> Entry:
    """The rest of a record after its owner: [TTL] [class] type rdata, TTL and class in
    either order."""
    ttl: int | None = None
    rclass: dns.rdataclass.RdataClass | None = None
    word = _word(tok, "a type")
    for _ in range(2):
        if ttl is None and word[:1].isdigit():
            ttl = _ttl(word, where)
        elif rclass is None and _is_class(word):
            rclass = dns.rdataclass.from_text(word)
            if rclass != _CLASS_IN:
                name = dns.rdataclass.to_text(rclass)
                raise ConfigError(where, f"class {name} is not served; only IN")
        else:
            break
        word = _word(tok, "a type")
    rtype = _type(word, where)
    if ttl is None:
        ttl = ctx.default_ttl if ctx.default_ttl is not None else DEFAULT_TTL
    origin = ctx.origin if ctx.origin is not None else dns.name.root
    type_text = dns.rdatatype.to_text(rtype)
    try:
        rdata = dns.rdata.from_text(_CLASS_IN, rtype, tok, origin, relativize=False)
        wire = rdata.to_wire()
        assert wire is not None  # without a file to write to, to_wire returns the bytes
        canonical = rdata.to_digestable()
    except dns.exception.SyntaxError as exc:
        raise ConfigError(_where(tok), _rdata_problem(type_text, str(exc))) from exc
    except dns.name.NeedAbsoluteNameOrOrigin as exc:
        raise ConfigError(_where(tok), "a relative name in the data and no $ORIGIN") from exc
    except dns.exception.DNSException as exc:
        raise ConfigError(_where(tok), _name_problem(exc, f"the {type_text} data")) from exc
    except (ValueError, TypeError, UnicodeError) as exc:
        # dnspython lets a few plain errors through from its field converters.
        raise ConfigError(_where(tok), f"bad {type_text} data: {exc}") from exc
    return Entry(
        owner=tuple(owner.labels[:-1]),
        rtype=int(rtype),
        ttl=ttl,
        rdata=wire,
        canonical=canonical,
        where=where,
        owner_text=owner.to_text(),
        type_text=type_text,
    )


def _directive(
    word: str,
    tok: _Tokenizer,
    where: str,
    ctx: _Context,
    directory: Path,
    out: list[Entry],
    depth: int,
) -> None:
    if word == "$ORIGIN":
        ctx.origin = _name(_word(tok, "a name after $ORIGIN"), ctx.origin, where)
        _end(tok, "$ORIGIN")
    elif word == "$TTL":
        ctx.default_ttl = _ttl(_word(tok, "a TTL after $TTL"), where)
        _end(tok, "$TTL")
    elif word == "$INCLUDE":
        _include(tok, where, ctx, directory, out, depth)
    elif word == "$GENERATE":
        _generate(tok, where, ctx, out)
    else:
        raise ConfigError(where, f"unknown directive {word}")


def _include(
    tok: _Tokenizer,
    where: str,
    ctx: _Context,
    directory: Path,
    out: list[Entry],
    depth: int,
) -> None:
    """``$INCLUDE file [origin]``: the file's entries in place; RFC 1035 5.1 says the
    including file's origin (and so its owner and TTL context) is not changed by it."""
    path = directory / _word(tok, "a file name after $INCLUDE")
    following = tok.get()
    origin = ctx.origin
    if not following.is_eol_or_eof():
        origin = _name(following.value, ctx.origin, where)
        _end(tok, "$INCLUDE")
    if depth >= _MAX_INCLUDE_DEPTH:
        raise ConfigError(where, f"$INCLUDE nested deeper than {_MAX_INCLUDE_DEPTH} files")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise ConfigError(where, f"cannot read the included file {path}: {reason}") from exc
    inner = _Context(origin, ctx.default_ttl)
    _read(text, str(path), inner, path.parent, out, depth + 1)


def _generate(tok: _Tokenizer, where: str, ctx: _Context, out: list[Entry]) -> None:
    """``$GENERATE start-stop[/step] lhs [ttl] [class] type rhs`` as BIND reads it: ``$`` is
    the counter, ``${offset,width,base}`` formats it, ``\\$`` is a dollar sign."""
    found = _GENERATE_RANGE.match(_word(tok, "a range after $GENERATE"))
    if found is None:
        raise ConfigError(where, "the $GENERATE range must be start-stop or start-stop/step")
    start, stop = int(found[1]), int(found[2])
    step = int(found[3] or 1)
    if stop < start or step < 1 or (stop - start) // step >= _MAX_GENERATED:
        raise ConfigError(
            where, f"the $GENERATE range must be increasing, at most {_MAX_GENERATED}"
        )
    words: list[str] = []
    for _ in range(_MAX_GENERATED):
        token = tok.get()
        if token.is_eol_or_eof():
            break
        words.append(token.value if not token.is_quoted_string() else f'"{token.value}"')
    if len(words) < 3:
        raise ConfigError(where, "$GENERATE needs an owner, a type and data")
    for counter in range(start, stop + 1, step):
        line = " ".join(_substitute(word, counter, where) for word in words)
        inner = _Tokenizer(line, where)
        try:
            owner = _name(_word(inner, "an owner"), ctx.origin, where)
            out.append(_record(inner, owner, ctx, where))
        except ConfigError as exc:
            # The generated line has no line of its own: blame the $GENERATE.
            raise ConfigError(where, f"$GENERATE at {counter}: {exc.reason}") from exc


def _substitute(word: str, counter: int, where: str) -> str:
    parts: list[str] = []
    rest = word
    for _ in range(len(word) + 1):
        dollar = rest.find("$")
        if dollar < 0:
            break
        if dollar > 0 and rest[dollar - 1] == "\\":
            parts.append(rest[: dollar - 1] + "$")
            rest = rest[dollar + 1 :]
            continue
        parts.append(rest[:dollar])
        rest = rest[dollar + 1 :]
        modifier = _GENERATE_MODIFIER.match(rest)
        if modifier is None:
            if rest.startswith("{"):
                raise ConfigError(where, "a $GENERATE modifier is ${offset[,width[,base]]}")
            parts.append(str(counter))
            continue
        rest = rest[modifier.end() :]
        value = counter + int(modifier[1])
        width = int(modifier[2] or 0)
        parts.append(_format_counter(value, width, modifier[3] or "d", where))
    return "".join(parts) + rest


def _format_counter(value: int, width: int, base: str, where: str) -> str:
    if value < 0:
        raise ConfigError(where, "a $GENERATE offset makes the counter negative")
    if base in "nN":
        # Nibbles, lowest first, as reverse IPv6 names want them.
        digits = f"{value:0{max(width, 1)}x}"
        nibbles = ".".join(reversed(digits))
        return nibbles.upper() if base == "N" else nibbles
    return format(value, f"0{width}{base}")


def _word(tok: _Tokenizer, what: str) -> str:
    token = tok.get()
    if token.is_eol_or_eof():
        raise ConfigError(_where(tok), f"the line ends where {what} was expected")
    if not token.is_identifier():
        raise ConfigError(_where(tok), f"{token.value!r} where {what} was expected")
    return str(token.value)


def _end(tok: _Tokenizer, directive: str) -> None:
    token = tok.get()
    if not token.is_eol_or_eof():
        raise ConfigError(_where(tok), f"unexpected {token.value!r} after {directive}")


def _name(text: str, origin: dns.name.Name | None, where: str) -> dns.name.Name:
    relative = text == "@" or not text.endswith(".")
    if origin is None and relative:
        raise ConfigError(where, f"the relative name {text!r} needs an $ORIGIN before it")
    try:
        return dns.name.from_text(text, origin)
    except dns.exception.DNSException as exc:
        raise ConfigError(where, _name_problem(exc, f"the name {text!r}")) from exc


def _ttl(word: str, where: str) -> int:
    try:
        ttl = dns.ttl.from_text(word)
    except dns.exception.DNSException as exc:
        raise ConfigError(where, f"{word!r} is not a TTL (seconds, or units as in 1h30m)") from exc
    if ttl > MAX_TTL:
        raise ConfigError(where, f"the TTL {word} is above {MAX_TTL} (RFC 2181 section 8)")
    return ttl


def _is_class(word: str) -> bool:
    try:
        dns.rdataclass.from_text(word)
    except dns.exception.DNSException:
        return False
    return True


def _type(word: str, where: str) -> dns.rdatatype.RdataType:
    try:
        rtype = dns.rdatatype.from_text(word)
    except dns.exception.DNSException as exc:
        raise ConfigError(where, f"unknown type {word!r}") from exc
    if dns.rdatatype.is_metatype(rtype) or rtype == dns.rdatatype.OPT:
        raise ConfigError(where, f"{word} is a query type, not a type of zone data")
    return rtype


def _where(tok: _Tokenizer) -> str:
    return f"{tok.filename}:{tok.last_line}"


def _lexical(message: str) -> str:
    if "unbalanced" in message or "parenthes" in message:
        return "unbalanced parentheses"
    if "quote" in message or "EOF" in message:
        return "a quoted string is never closed"
    return f"unreadable text ({message})"


def _rdata_problem(type_text: str, message: str) -> str:
    if message.startswith("expected EOL or EOF"):
        return f"unexpected text after the {type_text} data"
    if "wrong length" in message:
        return "the length after \\# does not match the data that follows"
    if message.startswith("unexpected end of input") or "expecting an identifier" in message:
        return f"the {type_text} data is incomplete"
    if "TTL value is not well-formed" in message:
        return f"a time field of the {type_text} data is not a number of seconds"
    detail = message.rstrip(".") or "malformed"
    if detail[1:2].islower():
        detail = detail[0].lower() + detail[1:]
    return f"bad {type_text} data: {detail}"


def _name_problem(exc: Exception, what: str) -> str:
    problems: dict[type[Exception], str] = {
        dns.name.LabelTooLong: "has a label longer than 63 octets",
        dns.name.NameTooLong: "is longer than 255 octets",
        dns.name.EmptyLabel: "has an empty label",
        dns.name.BadEscape: "has a bad escape",
    }
    for kind, problem in problems.items():
        if isinstance(exc, kind):
            return f"{what} {problem}"
    return f"{what} is unreadable ({exc})"
