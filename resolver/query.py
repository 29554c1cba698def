"""``resolver query``'s command line read as dig reads it, and the server it asks.

No sockets of its own: :mod:`resolver.stub` does the asking. The one lookup here, a host name
after ``@`` resolved through the system's resolver (getaddrinfo), is a parameter tests replace.

:func:`parse_command_line` turns the arguments into an :class:`Invocation`: the questions (a
name, ``-x ADDR`` or ``-q NAME``, each with the type and class words after it; words before the
first name are defaults for every question, as in dig), the ``@SERVER`` text, the
:class:`QueryOptions` for the exchange and the :class:`~resolver.dig.Display` for the output,
or ``trace`` (``+trace``: :mod:`resolver.trace` resolves from the root hints instead).
:func:`server_address` picks the address to ask: ``@SERVER`` (an IP or a host name), else
``$RESOLVER_SERVER``, else the first usable nameserver of resolv.conf, whose problems are errors
naming the file rather than a silent fallback.
"""

from __future__ import annotations

import ipaddress
import math
import socket
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Literal, NamedTuple

from resolver.dig import Address, Display
from resolver.errors import ConfigError, WireError
from resolver.wire import CLASS_IN, TYPE_A, check_name, name_to_wire, qclass_value, qtype_value

__all__ = [
    "DEFAULT_RESOLV_CONF",
    "Invocation",
    "QueryOptions",
    "Question",
    "nameserver_from_resolv_conf",
    "parse_command_line",
    "reverse_name",
    "server_address",
    "to_ascii_name",
]

Family = Literal[4, 6]

DEFAULT_RESOLV_CONF = Path("/etc/resolv.conf")
DEFAULT_PORT = 53
MAX_TIMEOUT = 300.0  # seconds per try: beyond this nobody is waiting for a DNS reply
MAX_TRIES = 20
_TYPE_PTR = 12
_BROADCAST = ipaddress.IPv4Address("255.255.255.255")


class Question(NamedTuple):
    """A validated question: ``name`` as text with a trailing dot, numeric type and class."""

    name: str
    qtype: int = TYPE_A
    qclass: int = CLASS_IN

    @property
    def wire_name(self) -> bytes:
        return name_to_wire(self.name)


# Plain NamedTuples rather than dataclasses: importing dataclasses (and the inspect module
# behind it) is a tenth of a one-shot query's start-up.
class _OptionFields(NamedTuple):
    timeout: float
    tries: int
    tcp: bool
    ignore_tc: bool
    recurse: bool
    cd: bool
    ad: bool
    dnssec: bool
    edns: int | None
    nsid: bool
    tls: bool
    tls_ca: str | None
    tls_hostname: str | None
    https: str | None


class QueryOptions(_OptionFields):
    """How to ask: ``timeout`` seconds per try, ``tries`` UDP tries (a timed-out try is
    repeated; TCP is tried once), ``tcp`` to skip UDP, ``ignore_tc`` to keep a truncated UDP
    reply; the query's RD (``recurse``), CD, AD and DO (``dnssec``) bits; ``edns`` the UDP size
    advertised in an OPT record (None: no OPT), ``nsid`` to ask for the server's NSID.
    ``tls`` asks over TLS and ``https`` (a URL path) over HTTPS, the certificate checked
    against ``tls_ca`` (a PEM file) and ``tls_hostname`` as kdig does.

    Raises ConfigError for a timeout that is not a finite number in (0, 300], tries outside
    1-20, an EDNS size outside 0-65535, or DO or NSID without EDNS.
    """

    __slots__ = ()

    def __new__(
        cls,
        *,
        timeout: float = 5.0,
        tries: int = 3,
        tcp: bool = False,
        ignore_tc: bool = False,
        recurse: bool = True,
        cd: bool = False,
        ad: bool = True,
        dnssec: bool = False,
        edns: int | None = 1232,
        nsid: bool = False,
        tls: bool = False,
        tls_ca: str | None = None,
        tls_hostname: str | None = None,
        https: str | None = None,
    ) -> QueryOptions:
        if not (math.isfinite(timeout) and 0 < timeout <= MAX_TIMEOUT):
            raise ConfigError(
                "--timeout", f"must be more than 0 and at most {MAX_TIMEOUT:g}, got {timeout!r}"
            )
        if not 1 <= tries <= MAX_TRIES:
            raise ConfigError("--tries", f"must be from 1 to {MAX_TRIES}, got {tries!r}")
        if edns is None:
            if dnssec or nsid:
                raise ConfigError("+noedns", "DO and NSID travel in the OPT record")
        elif not 0 <= edns <= 0xFFFF:
            raise ConfigError("+bufsize", f"must be from 0 to 65535, got {edns}")
        fields = (timeout, tries, tcp, ignore_tc, recurse, cd, ad, dnssec, edns, nsid)
        encryption = (tls, tls_ca, tls_hostname, https)
        return super().__new__(cls, *fields, *encryption)

    def __getnewargs_ex__(self) -> tuple[tuple[()], dict[str, object]]:
        # copy and pickle call __new__ with these: the fields by keyword, as it takes them.
        return (), self._asdict()


class Invocation(NamedTuple):
    """One ``resolver query`` command line, read. ``trace``: resolve each question from the
    root hints (``root_hints``, None for the package's copy of IANA's) instead of asking a
    server."""

    questions: tuple[Question, ...]
    server: str | None = None
    port: int | None = None
    family: Family | None = None
    options: QueryOptions = QueryOptions()
    display: Display = Display()
    resolv_conf: Path = DEFAULT_RESOLV_CONF
    warnings: tuple[str, ...] = ()
    help: bool = False
    trace: bool = False
    root_hints: Path | None = None


def to_ascii_name(name: str) -> str:
    """``name`` with its non-ASCII labels as IDNA 2008 A-labels (UTS 46 mapped, as dig's
    libidn2 does); an ASCII name is returned as it is. Raises WireError for a label that IDNA
    refuses."""
    if name.isascii():
        return name
    import idna

    labels = name.split(".")
    try:
        return ".".join(
            label if label.isascii() else idna.encode(label, uts46=True).decode("ascii")
            for label in labels
        )
    except idna.IDNAError as exc:
        raise WireError(f"{name!r} is not a valid internationalized name: {exc}") from exc


def reverse_name(text: str) -> str:
    """The in-addr.arpa. or ip6.arpa. name of an address (``-x``); ConfigError if not one."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise ConfigError("-x", f"{text!r} is not an IPv4 or IPv6 address") from None
    return address.reverse_pointer + "."


def _maybe(convert: Callable[[str], int], text: str) -> int | None:
    try:
        return convert(text)
    except WireError:
        return None


def _number(option: str, text: str, kind: Callable[[str], float | int]) -> float | int:
    try:
        return kind(text)
    except ValueError:
        raise ConfigError(option, f"{text!r} is not a number") from None


class _Draft:
    """A question being read: its type and class so far, and which of them it was given."""

    __slots__ = ("given", "name", "values")

    def __init__(self, name: str, values: dict[str, int], given: set[str]) -> None:
        self.name = name
        self.values = values
        self.given = given


class _Reader:
    """Reads argument words in order; the state dig keeps while it reads a command line."""

    def __init__(self, is_tty: bool) -> None:
        self.questions: list[_Draft] = []
        # Type and class words before the first name: every later question starts from them.
        self.defaults = _Draft("", {}, set())
        self.current: _Draft | None = None
        self.server: str | None = None
        self.port: int | None = None
        self.family: Family | None = None
        self.options: dict[str, object] = {}
        self.display: dict[str, object] = {"idnout": is_tty}
        self.style: str = "text"
        self.resolv_conf = DEFAULT_RESOLV_CONF
        self.warnings: list[str] = []
        self.help = False
        self.trace = False
        self.root_hints: Path | None = None

    # --- positional words -----------------------------------------------------------------

    def word(self, text: str) -> None:
        """A type, else a class, else a name starting a new question (dig's order)."""
        if (qtype := _maybe(qtype_value, text)) is not None:
            self.set_slot("type", qtype)
        elif (qclass := _maybe(qclass_value, text)) is not None:
            self.set_slot("class", qclass)
        else:
            self.question(check_name(to_ascii_name(text)))

    def set_slot(self, what: str, value: int) -> None:
        """The type or class of the current question (of every later one before a name);
        giving one twice warns as dig does, the last wins."""
        draft = self.defaults if self.current is None else self.current
        if what in draft.given:
            self.warnings.append(f";; Warning, extra {what} option")
        draft.values[what] = value
        draft.given.add(what)

    def question(self, name: str, qtype: int | None = None) -> None:
        """A new question, starting from the defaults (dig clones its default lookup)."""
        self.current = _Draft(name, dict(self.defaults.values), set())
        if qtype is not None:
            self.current.values["type"] = qtype
            self.current.given.add("type")
        self.questions.append(self.current)

    def finish_questions(self) -> tuple[Question, ...]:
        return tuple(
            Question(d.name, d.values.get("type", TYPE_A), d.values.get("class", CLASS_IN))
            for d in self.questions
        )

    # --- options --------------------------------------------------------------------------

    def at_server(self, text: str) -> None:
        if self.server is not None:
            raise ConfigError("@SERVER", f"given twice ({self.server!r} and {text!r})")
        if not text:
            raise ConfigError("@SERVER", "'@' needs an address after it")
        self.server = text

    def set_port(self, option: str, text: str) -> None:
        port = int(_number(option, text, int))
        if not 1 <= port <= 65535:
            raise ConfigError(option, f"port {port} is not a number from 1 to 65535")
        self.port = port

    def set_family(self, family: Family) -> None:
        if self.family is not None and self.family != family:
            raise ConfigError(f"-{family}", "-4 and -6 exclude each other")
        self.family = family

    def set_style(self, option: str, style: str) -> None:
        if self.style != "text" and self.style != style:
            raise ConfigError(option, "--short (+short) and --json exclude each other")
        self.style = style

    def plus(self, text: str) -> None:
        """A dig ``+[no]option[=value]`` (and kdig's ``+https[=URL]``)."""
        body = text[1:]
        name, _, value = body.partition("=")
        has_value = "=" in body
        if name in ("https", "nohttps"):
            self.options["https"] = _https_path(text, value) if name == "https" else None
            return
        negated = name.startswith("no") and name[2:] in _PLUS
        key = name[2:] if negated else name
        if key not in _PLUS:
            raise ConfigError(text, "unknown dig option")
        kind = _PLUS[key]
        if isinstance(kind, tuple):  # a value option: +time=N
            if negated or not has_value:
                raise ConfigError(text, f"needs a value: +{key}=VALUE")
            target, convert = kind
            self.options[target] = convert(text, value)
            return
        if has_value:
            raise ConfigError(text, "takes no value")
        kind(self, not negated)


def _time(option: str, value: str) -> float:
    return float(_number(option, value, float))


def _tries(option: str, value: str) -> int:
    return int(_number(option, value, int))


def _retry(option: str, value: str) -> int:
    return int(_number(option, value, int)) + 1


def _bufsize(option: str, value: str) -> int:
    return int(_number(option, value, int))


def _path(option: str, value: str) -> str:
    if not value:
        raise ConfigError(option, "needs a file: +tls-ca=FILE")
    return value


def _hostname(option: str, value: str) -> str:
    if not value:
        raise ConfigError(option, "needs a name: +tls-hostname=NAME")
    return check_name(to_ascii_name(value)).rstrip(".")


def _https_path(option: str, value: str) -> str:
    """The path of ``+https[=URL]``: the URL's path (``https://host/path`` or ``/path``)."""
    if not value:
        return "/dns-query"
    if "://" in value:
        value = "/" + value.split("://", 1)[1].partition("/")[2]
    if not value.startswith("/"):
        raise ConfigError(option, "needs a path or an https:// URL")
    return value


def _flag(key: str) -> Callable[[_Reader, bool], None]:
    def apply(reader: _Reader, on: bool) -> None:
        reader.options[key] = on

    return apply


def _section(*keys: str) -> Callable[[_Reader, bool], None]:
    def apply(reader: _Reader, on: bool) -> None:
        for key in keys:
            reader.display[key] = on

    return apply


def _short(reader: _Reader, on: bool) -> None:
    if on:
        reader.set_style("+short", "short")
    elif reader.style == "short":
        reader.style = "text"


def _edns(reader: _Reader, on: bool) -> None:
    reader.options["edns_on"] = on


def _trace(reader: _Reader, on: bool) -> None:
    reader.trace = on


def _noop(reader: _Reader, on: bool) -> None:
    """Options that change nothing here (``+cmd``: the banner is never printed)."""


_SECTIONS = ("comments", "question", "answer", "authority", "additional", "stats")

_PLUS: dict[str, Callable[[_Reader, bool], None] | tuple[str, Callable[[str, str], object]]] = {
    "short": _short,
    "tcp": _flag("tcp"),
    "vc": _flag("tcp"),
    "ignore": _flag("ignore_tc"),
    "recurse": _flag("recurse"),
    "dnssec": _flag("dnssec"),
    "cd": _flag("cd"),
    "cdflag": _flag("cd"),
    "ad": _flag("ad"),
    "adflag": _flag("ad"),
    "nsid": _flag("nsid"),
    "edns": _edns,
    "bufsize": ("edns_size", _bufsize),
    "time": ("timeout", _time),
    "tries": ("tries", _tries),
    "retry": ("tries", _retry),
    "all": _section(*_SECTIONS),
    "comments": _section("comments"),
    "question": _section("question"),
    "answer": _section("answer"),
    "authority": _section("authority"),
    "additional": _section("additional"),
    "stats": _section("stats"),
    "multiline": _section("multiline"),
    "idnout": _section("idnout"),
    "cmd": _noop,
    "trace": _trace,
    "tls": _flag("tls"),
    "tls-ca": ("tls_ca", lambda option, value: _path(option, value)),
    "tls-hostname": ("tls_hostname", lambda option, value: _hostname(option, value)),
}

# Options that take a value, in their short and long spellings.
_VALUED = frozenset({"-p", "--port", "-t", "-c", "-x", "-q", "-f", "--timeout", "--tries"})
_VALUED |= {"--resolv-conf", "--root-hints"}
_LONG_FLAGS: dict[str, tuple[str, object]] = {
    "--tcp": ("tcp", True),
    "--dnssec": ("dnssec", True),
    "--norecurse": ("recurse", False),
}


def _words(args: Sequence[str]) -> Iterator[tuple[str, str | None]]:
    """Each argument with its value: ``-t MX``, ``-tMX``, ``--port=53`` and ``--port 53``."""
    position = 0
    while position < len(args):
        arg = args[position]
        position += 1
        if arg.startswith("--") and "=" in arg:
            name, _, value = arg.partition("=")
            yield name, value
        elif arg in _VALUED:
            if position >= len(args):
                raise ConfigError(arg, "needs a value after it")
            yield arg, args[position]
            position += 1
        elif len(arg) > 2 and arg[:2] in _VALUED:
            yield arg[:2], arg[2:]
        else:
            yield arg, None


def _read(reader: _Reader, args: Sequence[str], *, batch: bool = False) -> None:
    for arg, value in _words(args):
        if value is not None:
            _valued(reader, arg, value, batch=batch)
        elif arg.startswith("@"):
            reader.at_server(arg[1:])
        elif arg.startswith("+"):
            reader.plus(arg)
        elif arg in ("-4", "-6"):
            reader.set_family(4 if arg == "-4" else 6)
        elif arg in ("-h", "--help"):
            reader.help = True
        elif arg == "--short":
            reader.set_style(arg, "short")
        elif arg == "--json":
            reader.set_style(arg, "json")
        elif arg == "--trace":
            reader.trace = True
        elif arg in _LONG_FLAGS:
            key, setting = _LONG_FLAGS[arg]
            reader.options[key] = setting
        elif arg.startswith("-") and arg != "-":
            raise ConfigError(arg, "no such option")
        else:
            reader.word(arg)


def _valued(reader: _Reader, option: str, value: str, *, batch: bool) -> None:
    if option in ("-p", "--port"):
        reader.set_port(option, value)
    elif option in ("-t", "-c"):
        convert, what = (qtype_value, "type") if option == "-t" else (qclass_value, "class")
        number = _maybe(convert, value)
        if number is None:
            raise ConfigError(option, f"unknown {what} {value!r}")
        reader.set_slot(what, number)
    elif option == "-x":
        reader.question(reverse_name(value), _TYPE_PTR)
    elif option == "-q":
        reader.question(check_name(to_ascii_name(value)))
    elif option == "-f":
        if batch:
            raise ConfigError("-f", "a batch file cannot name another")
        _read_batch(reader, Path(value))
    elif option == "--timeout":
        reader.options["timeout"] = _time(option, value)
    elif option == "--tries":
        reader.options["tries"] = _tries(option, value)
    elif option == "--resolv-conf":
        reader.resolv_conf = Path(value)
    elif option == "--root-hints":
        reader.root_hints = Path(value)
    else:
        raise ConfigError(option, "takes no value")


def _read_batch(reader: _Reader, path: Path) -> None:
    """``-f FILE``: each line holds the words of one question (dig's batch file); blank lines
    and lines starting with ``#`` or ``;`` are skipped. Type and class words before the name
    on a line are defaults for that line only."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeError) as exc:
        raise ConfigError("-f", f"cannot read {str(path)!r}: {exc}") from exc
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split()
        if not words or words[0][0] in "#;":
            continue
        saved = reader.defaults
        reader.defaults = _Draft("", dict(saved.values), set(saved.given))
        reader.current = None
        try:
            _read(reader, words, batch=True)
        except (ConfigError, WireError) as exc:
            raise ConfigError(f"{path}:{number}", str(exc)) from exc
        reader.defaults = saved
        reader.current = None


def parse_command_line(args: Sequence[str], *, is_tty: bool = False) -> Invocation:
    """Read ``resolver query``'s arguments as dig reads its own.

    Besides ``@SERVER``, ``+options``, ``-options`` and ``--options``, each word is a type if
    it names one, else a class if it names one, else a name starting a new question; a type
    or class applies to the question before it, or to every question when no name came yet.
    ``is_tty`` sets the default of ``+idnout`` (A-labels shown as Unicode), as dig does.
    Raises ConfigError for an unknown or malformed option, a missing name, a bad ``-x``
    address or an unreadable ``-f`` file, ``--root-hints`` without ``+trace``, ``+trace``
    with ``@SERVER`` or ``--json``; WireError for a name that cannot be sent.
    """
    reader = _Reader(is_tty)
    _read(reader, args)
    if reader.help:
        return Invocation(questions=(), help=True)
    if not reader.questions:
        raise ConfigError("NAME", "missing: what should be looked up?")
    _check_trace(reader)
    options = _query_options(dict(reader.options))
    display = Display(style=reader.style, **reader.display)  # type: ignore[arg-type]
    return Invocation(
        questions=reader.finish_questions(),
        server=reader.server,
        port=reader.port,
        family=reader.family,
        options=options,
        display=display,
        resolv_conf=reader.resolv_conf,
        warnings=tuple(reader.warnings),
        trace=reader.trace,
        root_hints=reader.root_hints,
    )


def _check_trace(reader: _Reader) -> None:
    """``+trace`` asks the servers of the DNS from the root hints: a server to ask, or JSON
    output (the steps are text lines), make no sense with it; ``--root-hints`` nothing
    without it."""
    if not reader.trace:
        if reader.root_hints is not None:
            raise ConfigError("--root-hints", "only with +trace (--trace)")
        return
    if reader.server is not None:
        raise ConfigError("@SERVER", "+trace asks the root servers of the root hints, not a server")
    if reader.style == "json":
        raise ConfigError("--json", "+trace prints its steps as text, not JSON")


def _query_options(settings: dict[str, object]) -> QueryOptions:
    """EDNS is on unless ``+noedns``; ``+dnssec`` and ``+nsid`` turn it back on, as in dig."""
    size = settings.pop("edns_size", None)
    edns_on = settings.pop("edns_on", True)
    if edns_on or settings.get("dnssec") or settings.get("nsid"):
        settings["edns"] = 1232 if size is None else size
    else:
        settings["edns"] = None
    return QueryOptions(**settings)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- the server


def nameserver_from_resolv_conf(
    path: Path = DEFAULT_RESOLV_CONF, family: Family | None = None
) -> str:
    """The first ``nameserver`` in resolv.conf whose value is an IP address (of ``family``,
    when given).

    Comments (``#``, ``;``) and other options are ignored; nameserver lines that hold no
    address are skipped as glibc skips them. Raises ConfigError naming the file when it cannot
    be read, has no nameserver line, or none of them is a usable address.
    """
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read it: {exc.strerror or exc}") from exc
    bad: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split("#", 1)[0].split(";", 1)[0].split()
        if not fields or fields[0] != "nameserver":
            continue
        value = fields[1] if len(fields) > 1 else ""
        try:
            address = ipaddress.ip_address(value.partition("%")[0])
        except ValueError:
            bad.append(f"line {number}: {value!r} is not an IP address")
            continue
        if family is not None and address.version != family:
            bad.append(f"line {number}: {value} is not IPv{family} (-{family})")
            continue
        return value
    if bad:
        raise ConfigError(str(path), "no usable nameserver (" + "; ".join(bad) + ")")
    raise ConfigError(str(path), "has no nameserver line; give @SERVER")


def _split_port(text: str, field_name: str) -> tuple[str, int | None]:
    """``host``, ``host:port``, ``v6`` or ``[v6]:port``; the port is None when absent."""
    host, port_text = text, ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ConfigError(field_name, f"{text!r} has an unclosed '['")
        host, rest = text[1:end], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ConfigError(field_name, f"{text!r} has junk after ']'")
        port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    if not port_text:
        return host, None
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ConfigError(field_name, f"port {port_text!r} is not a number from 1 to 65535")
    return host, int(port_text)


def _is_host_name(text: str) -> bool:
    """A syntactically valid host name (letters, digits, hyphens), not all-numeric."""
    labels = text.rstrip(".").split(".")
    if not text or len(text) > 253 or labels[-1].isdigit():
        return False
    return all(
        0 < len(label) <= 63
        and label.isascii()
        and label.replace("-", "").isalnum()
        and not label.startswith("-")
        and not label.endswith("-")
        for label in labels
    )


Lookup = Callable[[str, int, int], list[str]]


def _system_lookup(host: str, port: int, family: int) -> list[str]:
    """The addresses of ``host`` from the system's resolver (getaddrinfo), in its order."""
    infos = socket.getaddrinfo(host, port, family, socket.SOCK_DGRAM)
    return [str(info[4][0]) for info in infos]


def server_address(
    server: str | None,
    port: int | None,
    *,
    default_port: int = DEFAULT_PORT,
    family: Family | None = None,
    env_server: str | None = None,
    resolv_conf: Path = DEFAULT_RESOLV_CONF,
    lookup: Lookup = _system_lookup,
) -> Address:
    """The address to ask: ``@SERVER``, else ``env_server``, else resolv.conf's first nameserver.

    ``server`` and ``env_server`` may carry a port (``127.0.0.1:5353``, ``[::1]:53``); ``port``
    (``-p``) overrides it; the default is ``default_port`` (53). A host name in ``server`` is
    resolved with ``lookup`` (the system's resolver), keeping the first address of ``family``.
    Raises
    ConfigError naming the bad part: an unusable resolv.conf, a host name that does not
    resolve, an address of the wrong family, multicast or broadcast, a port outside 1-65535.
    """
    if server is not None:
        text, field_name = server, "@SERVER"
    elif env_server:
        text, field_name = env_server, "RESOLVER_SERVER"
    else:
        found = nameserver_from_resolv_conf(resolv_conf, family)
        # resolv.conf holds bare addresses: an IPv6 one must not be split at its colons.
        text, field_name = (f"[{found}]" if ":" in found else found), str(resolv_conf)
    host, text_port = _split_port(text.strip(), field_name)
    try:
        ip = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        if field_name != "@SERVER" or not _is_host_name(host):
            raise ConfigError(field_name, f"{host!r} is not an IP address") from None
        host = _resolve(host, family, lookup)
        ip = ipaddress.ip_address(host.partition("%")[0])
    if family is not None and ip.version != family:
        raise ConfigError(field_name, f"{host} is not an IPv{family} address (-{family})")
    if ip.is_multicast or ip == _BROADCAST:
        raise ConfigError(field_name, f"{host} is a multicast or broadcast address, not a server")
    chosen = port if port is not None else (text_port or default_port)
    return host, chosen


def _resolve(host: str, family: Family | None, lookup: Lookup) -> str:
    kind = {None: socket.AF_UNSPEC, 4: socket.AF_INET, 6: socket.AF_INET6}[family]
    try:
        addresses = lookup(host, DEFAULT_PORT, kind)
    except (OSError, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError("@SERVER", f"couldn't get address for {host!r}: {reason}") from exc
    if not addresses:
        raise ConfigError("@SERVER", f"couldn't get address for {host!r}: no address")
    return addresses[0]
