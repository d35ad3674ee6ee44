#!/usr/bin/env python3
"""An IMAP proxy that makes a private Dovecot behave like Gmail, for integration
tests (standard library only).

What it is for: Gmail cannot be reached from a test, yet idlewild must cope with
what makes Gmail different from Dovecot -- no QRESYNC and no NOTIFY, 64-bit
X-GM-MSGID / X-GM-THRID message ids (X-GM-EXT-1), a limit on simultaneous
connections, [THROTTLED] and [OVERQUOTA] responses, and sessions that end with a
BYE. The proxy sits between the client and a Dovecot and rewrites what passes.

    python3 gmail_proxy.py --target 127.0.0.1:PORT --log EVENTS.jsonl
        [--control CONTROL.json] [--max-connections 15] [--keep-qresync] [--port P]

It binds 127.0.0.1 (on a free port unless --port is given), prints the port on
stdout (one line), and relays each connection (two threads per connection) to
--target, which must be a loopback address, until it is killed. SIGTERM ends it
at once.

IMAP framing: both directions are lines ending CRLF; a line ending in `{N}`,
`{N+}` or `~{N}` is followed by N literal bytes, then the line goes on. Only the
text outside literals is rewritten; literals pass unchanged. A client's
synchronising literal is relayed as it is (the server sends the `+`), and a
server that answers with a tagged NO instead of `+` (Dovecot's APPEND to a
missing mailbox) is understood: the client then sends no literal.

What it changes:
  capabilities  in every `* CAPABILITY ...` line and `[CAPABILITY ...]` code:
                QRESYNC (kept with --keep-qresync) and NOTIFY are removed,
                X-GM-EXT-1 is added. STARTTLS is removed too: the proxy cannot
                relay TLS, so it answers a STARTTLS command with BAD itself.
  ENABLE        QRESYNC is taken out of the command (unless --keep-qresync), as
                Gmail does not enable it; `ENABLE QRESYNC` alone is answered by
                the proxy with an empty `* ENABLED`.
  NOTIFY        answered by the proxy with `BAD Unknown command.`
  message ids   Gmail's ids are made from Dovecot's X-GUID (a message COPYed to
                another folder keeps its X-GUID): the client's FETCH items
                X-GM-MSGID and X-GM-THRID become one X-GUID; a server's
                `X-GUID g` in `* N FETCH` becomes `X-GM-MSGID n X-GM-THRID n`,
                n = the first 8 bytes of SHA-256(g), big-endian, unsigned (so
                about half of all ids are above 2^63). The ids seen are kept
                (for all connections), so `X-GM-MSGID n` / `X-GM-THRID n` in a
                SEARCH, SORT or THREAD becomes `X-GUID "g"`; an id never seen
                becomes `X-GUID 0`, which matches nothing.
  connections   counted from accept to close. A connection with --max-connections
                or more older connections still open gets the greeting, but
                its LOGIN / AUTHENTICATE is answered by the proxy:
                `<tag> NO [ALERT] Too many simultaneous connections. (Failure)`.
                The connection stays open (a later LOGIN may succeed).

CONTROL.json, re-read (when its mtime, size or inode changed) before each client
command; missing, empty or unparsable means {}:
  {"throttled": true}          ` [THROTTLED]` is appended to every tagged OK
  {"overquota_after_bodies": K} once K bodies were relayed (all connections
                               together), FETCH is answered as under "overquota"
                               (Gmail's daily download limit reached mid-sync)
  {"overquota": ["FETCH", ..]} commands of these names (after the tag and an
                               optional UID; case does not matter) are answered
                               `<tag> NO [OVERQUOTA] Account exceeded command or
                               bandwidth limits.` and not forwarded
  {"bye_after_commands": K}    once a connection's K-th (or later) command has
                               been answered: `* BYE Session expired, please
                               login again.` and the connection is closed

EVENTS.jsonl gets one JSON object per line, appended and flushed at once; a
command is logged before it is forwarded, a body before it is relayed:
  {"conn": i, "event": "open"}  /  {"conn": i, "event": "close"}
  {"conn": i, "cmd": "A1 APPEND INBOX {310}"}   each client command as received,
        line ends and literal contents left out (the `{N}` stays); bytes are
        read as UTF-8, or as Latin-1 where that fails. Continuation lines of
        AUTHENTICATE and IDLE's DONE are not commands and are not logged.
  {"conn": i, "event": "refused"}               a LOGIN refused for the limit
  {"conn": i, "body": SIZE, "folder": "NAME"}   a `* N FETCH` with a BODY[],
        BODY[]<0> or RFC822 literal; NAME is the folder as the client named it
        in SELECT / EXAMINE ("" if none is selected)
Connections are numbered 1, 2, ... in the order accepted.

COMPRESS=DEFLATE (if the server offers it) works: after its OK the proxy inflates
and deflates both sides itself.
"""

import argparse
import hashlib
import ipaddress
import json
import os
import re
import signal
import socket
import sys
import threading
import time
import traceback
import zlib

CHUNK = 64 * 1024
GMAIL_CAPABILITY = b"X-GM-EXT-1"
TOO_MANY = b"NO [ALERT] Too many simultaneous connections. (Failure)"
OVERQUOTA = b"NO [OVERQUOTA] Account exceeded command or bandwidth limits."
SESSION_EXPIRED = b"* BYE Session expired, please login again.\r\n"

# A line that announces a literal: `{N}` (synchronising), `{N+}`, `~{N}` (binary).
LITERAL = re.compile(rb"~?\{(\d+)(\+?)\}\r?\n\Z")
QUOTED = rb'"(?:[^"\\\r\n]|\\.)*"'
# `X-GUID value` in a server FETCH response; quoted strings are skipped whole.
FETCH_GUID = re.compile(rb"(" + QUOTED + rb")|(?<=[ (])X-GUID (" + QUOTED + rb"|[^\s()\"]+)", re.I)
# `X-GM-MSGID n` / `X-GM-THRID n` as a search key.
SEARCH_ID = re.compile(rb"(" + QUOTED + rb")|(?<=[ (])X-GM-(?:MSGID|THRID) (\d+)", re.I)
# Text before a literal that carries a whole message.
BODY_ITEM = re.compile(rb"(?:^|[ (])(?:BODY\[\](?:<0>)?|RFC822) \Z", re.I)
CAPABILITY_CODE = re.compile(rb"\[CAPABILITY ([^\]]*)\]", re.I)
CAPABILITY_LINE = re.compile(rb"\A(\* CAPABILITY )([^\r\n]*)", re.I)
SEARCHES = {b"SEARCH", b"SORT", b"THREAD"}


class Closed(Exception):
    """The peer closed its side."""


def text_of(data):
    """Bytes for the log: UTF-8 where they are, else one character per byte."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def unquote(token):
    if token.startswith(b'"') and token.endswith(b'"') and len(token) >= 2:
        return re.sub(rb"\\(.)", rb"\1", token[1:-1])
    return token


def quote(value):
    return b'"' + re.sub(rb'(["\\])', rb"\\\1", value) + b'"'


def message_id(guid):
    """Gmail's X-GM-MSGID for a Dovecot X-GUID: an unsigned 64-bit number."""
    return int.from_bytes(hashlib.sha256(guid).digest()[:8], "big")


def split_eol(line):
    """(text, line end) of a line as read."""
    if line.endswith(b"\r\n"):
        return line[:-2], b"\r\n"
    if line.endswith(b"\n"):
        return line[:-1], b"\n"
    return line, b""


def closing_paren(data, start):
    """Index of the ')' that closes the '(' at `start`, or -1. Brackets
    (`BODY[HEADER.FIELDS (A B)]`) and quoted strings are skipped."""
    depth = 0
    i = start
    while i < len(data):
        c = data[i : i + 1]
        if c == b'"':
            m = re.compile(QUOTED).match(data, i)
            if not m:
                return -1
            i = m.end()
            continue
        if c == b"[":
            end = data.find(b"]", i)
            if end < 0:
                return -1
            i = end + 1
            continue
        if c == b"(":
            depth += 1
        elif c == b")":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def split_items(data):
    """The space-separated items of a FETCH item list, brackets and parentheses
    kept together (`BODY.PEEK[HEADER.FIELDS (FROM TO)]<0.100>` is one item)."""
    items, depth, start = [], 0, 0
    for i in range(len(data)):
        c = data[i : i + 1]
        if c in (b"[", b"("):
            depth += 1
        elif c in (b"]", b")"):
            depth -= 1
        elif c == b" " and depth == 0:
            if i > start:
                items.append(data[start:i])
            start = i + 1
    if start < len(data):
        items.append(data[start:])
    return items


class Reader:
    """Buffered reads from a socket, optionally inflating (COMPRESS=DEFLATE)."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()
        self.inflate = None

    def _fill(self):
        while True:
            data = self.sock.recv(CHUNK)
            if not data:
                raise Closed()
            if self.inflate is not None:
                data = self.inflate.decompress(data)
                if not data:
                    continue
            self.buf += data
            return

    def readline(self):
        start = 0
        while True:
            i = self.buf.find(b"\n", start)
            if i >= 0:
                line = bytes(self.buf[: i + 1])
                del self.buf[: i + 1]
                return line
            start = len(self.buf)
            self._fill()

    def read(self, n):
        while len(self.buf) < n:
            self._fill()
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def wait(self):
        """Blocks until at least one byte can be read."""
        while not self.buf:
            self._fill()

    def start_inflate(self):
        self.inflate = zlib.decompressobj(-15)
        pending = bytes(self.buf)
        self.buf = bytearray(self.inflate.decompress(pending))


class Writer:
    """Whole writes to a socket under a lock, optionally deflating."""

    def __init__(self, sock):
        self.sock = sock
        self.lock = threading.Lock()
        self.deflate = None

    def send(self, data):
        with self.lock:
            if self.deflate is not None:
                data = self.deflate.compress(data) + self.deflate.flush(zlib.Z_SYNC_FLUSH)
            self.sock.sendall(data)

    def start_deflate(self):
        with self.lock:
            self.deflate = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)


class Proxy:
    """State shared by all connections: options, control, log, message ids."""

    def __init__(self, args):
        self.target = args.target
        self.max_connections = args.max_connections
        self.keep_qresync = args.keep_qresync
        self.control_path = args.control
        self.control = {}
        self.control_key = None
        self.control_lock = threading.Lock()
        self.log_file = open(args.log, "a", encoding="utf-8")
        self.log_lock = threading.Lock()
        self.ids = {}
        self.ids_lock = threading.Lock()
        self.live = set()
        self.live_lock = threading.Lock()
        self.counter = 0
        self.bodies = 0
        self.bodies_lock = threading.Lock()

    def log(self, entry):
        line = json.dumps(entry) + "\n"
        with self.log_lock:
            self.log_file.write(line)
            self.log_file.flush()

    def settings(self):
        """The control file's content, re-read only when the file changed."""
        with self.control_lock:
            if self.control_path is None:
                return self.control
            try:
                st = os.stat(self.control_path)
                key = (st.st_mtime_ns, st.st_size, st.st_ino)
            except OSError:
                key = None
            if key != self.control_key:
                value = {}
                if key is not None:
                    try:
                        with open(self.control_path, encoding="utf-8") as f:
                            text = f.read()
                        value = json.loads(text) if text.strip() else {}
                        if not isinstance(value, dict):
                            value = {}
                    except (OSError, ValueError):
                        value = {}
                self.control = value
                self.control_key = key
            return self.control

    def current(self):
        """The settings last read (for the server side, which does not re-read)."""
        with self.control_lock:
            return self.control

    def body_relayed(self):
        with self.bodies_lock:
            self.bodies += 1

    def bodies_relayed(self):
        with self.bodies_lock:
            return self.bodies

    def id_for(self, guid):
        n = message_id(guid)
        with self.ids_lock:
            self.ids[n] = guid
        return n

    def guid_for(self, n):
        with self.ids_lock:
            return self.ids.get(n)

    def capabilities(self, caps):
        drop = {b"NOTIFY", b"STARTTLS"}
        if not self.keep_qresync:
            drop.add(b"QRESYNC")
        out = [c for c in caps.split() if c.upper() not in drop]
        if not any(c.upper() == GMAIL_CAPABILITY for c in out):
            out.append(GMAIL_CAPABILITY)
        return b" ".join(out)

    def accept(self):
        with self.live_lock:
            self.counter += 1
            conn = self.counter
            self.live.add(conn)
        return conn

    def release(self, conn):
        with self.live_lock:
            self.live.discard(conn)

    def over_limit(self, conn):
        """Whether `max_connections` or more connections older than `conn` are open."""
        with self.live_lock:
            return sum(1 for c in self.live if c < conn) >= self.max_connections


class Connection:
    def __init__(self, proxy, client):
        self.proxy = proxy
        self.client = client
        self.server = None
        self.id = proxy.accept()
        self.lock = threading.Lock()
        # tag -> what to do when its tagged response passes.
        self.pending = {}
        self.folder = None
        # Tag whose command is AUTHENTICATE or IDLE while it runs: the client's
        # lines are then not commands.
        self.raw_tag = None
        # Tag of a command that waits for `+` before sending a literal, and
        # whether the server answered it with a tagged response instead.
        self.literal_tag = None
        self.literal_refused = False
        self.commands = 0

    # --- life cycle --------------------------------------------------------

    def run(self):
        self.proxy.log({"conn": self.id, "event": "open"})
        try:
            self.cr = Reader(self.client)
            self.cw = Writer(self.client)
            try:
                self.server = socket.create_connection(self.proxy.target, timeout=10)
                self.server.settimeout(None)
            except OSError as e:
                try:
                    self.cw.send(b"* BYE proxy: cannot reach the server: %s\r\n" % str(e).encode())
                except OSError:
                    pass
                return
            for s in (self.client, self.server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sr = Reader(self.server)
            self.sw = Writer(self.server)
            down = threading.Thread(target=self.guarded, args=(self.server_side,), daemon=True)
            down.start()
            self.guarded(self.client_side)
            down.join()
        finally:
            self.shutdown()
            for s in (self.client, self.server):
                if s is not None:
                    try:
                        s.close()
                    except OSError:
                        pass
            self.proxy.release(self.id)
            self.proxy.log({"conn": self.id, "event": "close"})

    def guarded(self, side):
        try:
            side()
        except (Closed, OSError):
            pass
        except Exception:
            sys.stderr.write("conn %d: %s" % (self.id, traceback.format_exc()))
            sys.stderr.flush()
        finally:
            self.shutdown()

    def shutdown(self):
        """Ends both sides; what was sent is still delivered."""
        for s in (self.client, self.server):
            if s is not None:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def expire(self):
        self.cw.send(SESSION_EXPIRED)
        self.shutdown()

    # --- client to server --------------------------------------------------

    def client_side(self):
        while True:
            line = self.cr.readline()
            with self.lock:
                raw = self.raw_tag is not None
            if raw:
                self.sw.send(line)
                continue
            self.command(line)

    def command(self, first):
        settings = self.proxy.settings()
        self.commands += 1
        text, _ = split_eol(first)
        words = text.split(b" ", 3)
        tag = words[0]
        name = words[1].upper() if len(words) > 1 else b""
        uid = name == b"UID"
        if uid:
            name = words[2].upper() if len(words) > 2 else b""
        bye = self.commands >= _int(settings.get("bye_after_commands"))

        answer = None
        refused = False
        if name in (b"LOGIN", b"AUTHENTICATE") and self.proxy.over_limit(self.id):
            answer = b"%s %s\r\n" % (tag, TOO_MANY)
            refused = True
        elif (
            name in _names(settings.get("overquota"))
            or (uid and b"UID " + name in _names(settings.get("overquota")))
            or (
                name == b"FETCH"
                and settings.get("overquota_after_bodies") is not None
                and self.proxy.bodies_relayed() >= _int(settings.get("overquota_after_bodies"))
            )
        ):
            answer = b"%s %s\r\n" % (tag, OVERQUOTA)
        elif name == b"STARTTLS":
            answer = b"%s BAD STARTTLS is not available through this proxy.\r\n" % tag
        elif name == b"NOTIFY":
            answer = b"%s BAD Unknown command.\r\n" % tag
        elif (
            name == b"ENABLE"
            and not self.proxy.keep_qresync
            and b"QRESYNC" in text.upper().split(b" ")[2:]
            and not enable_without_qresync(text)
        ):
            answer = b"* ENABLED\r\n" + self.tagged_ok(tag, b"Success")

        if answer is not None:
            logged = self.absorb(first)
            self.proxy.log({"conn": self.id, "cmd": text_of(logged)})
            if refused:
                self.proxy.log({"conn": self.id, "event": "refused"})
            self.cw.send(answer)
            if bye:
                self.expire()
            return

        info = {}
        if name in (b"SELECT", b"EXAMINE"):
            info["select"] = True
        elif name in (b"CLOSE", b"UNSELECT"):
            info["close"] = True
        elif name in (b"AUTHENTICATE", b"IDLE"):
            info["raw"] = True
        elif name == b"COMPRESS":
            info["compress"] = True
        if bye:
            info["bye"] = True
        self.forward(first, tag, name, info)

    def absorb(self, line):
        """Reads the rest of a command the proxy answers itself; sends `+` for
        its synchronising literals. Returns the command as logged."""
        logged = b""
        while True:
            text, _ = split_eol(line)
            logged += text
            m = LITERAL.search(line)
            if not m:
                return logged
            if not m.group(2):
                self.cw.send(b"+ go ahead\r\n")
            self.cr.read(int(m.group(1)))
            line = self.cr.readline()

    def forward(self, line, tag, name, info):
        logged = b""
        index = 0
        select_arg = None
        while True:
            m = LITERAL.search(line)
            text, _ = split_eol(line)
            logged += text
            if index == 0 and info.get("select"):
                select_arg = text
            line = self.rewrite_command(line, name, index)
            if not m:
                if info.get("select") and select_arg is not None:
                    info["folder"] = mailbox_argument(select_arg)
                self.proxy.log({"conn": self.id, "cmd": text_of(logged)})
                with self.lock:
                    self.pending[tag] = info
                    if info.get("raw"):
                        self.raw_tag = tag
                self.sw.send(line)
                return
            size = int(m.group(1))
            sync = not m.group(2)
            if sync:
                with self.lock:
                    self.literal_tag = tag
                    self.literal_refused = False
            self.sw.send(line)
            if sync:
                # The client sends the literal once the server's `+` reached it;
                # if the server answered with a tagged NO instead, what the
                # client sends next is a new command.
                self.cr.wait()
                with self.lock:
                    refused = self.literal_refused
                    self.literal_tag = None
                    self.literal_refused = False
                if refused:
                    self.proxy.log({"conn": self.id, "cmd": text_of(logged)})
                    return
            literal = self.cr.read(size)
            if index == 0 and info.get("select"):
                info["folder"] = literal
                select_arg = None
            self.sw.send(literal)
            line = self.cr.readline()
            index += 1

    def rewrite_command(self, line, name, index):
        if name == b"FETCH" and index == 0:
            line = fetch_items(line)
        elif name == b"ENABLE" and index == 0 and not self.proxy.keep_qresync:
            text, eol = split_eol(line)
            words = text.split(b" ")
            line = b" ".join(words[:2]) + b" " + enable_without_qresync(text) + eol
        elif name in SEARCHES:
            line = SEARCH_ID.sub(self.search_id, line)
        return line

    def search_id(self, m):
        if m.group(1) is not None:
            return m.group(1)
        guid = self.proxy.guid_for(int(m.group(2)))
        if guid is None:
            return b"X-GUID 0"
        return b"X-GUID " + quote(guid)

    # --- server to client --------------------------------------------------

    def server_side(self):
        while True:
            parts = []
            while True:
                line = self.sr.readline()
                m = LITERAL.search(line)
                if not m:
                    parts.append([line, None])
                    break
                parts.append([line, self.sr.read(int(m.group(1)))])
            self.response(parts)

    def response(self, parts):
        first = parts[0][0]
        if first.startswith(b"+"):
            with self.lock:
                self.literal_tag = None
            self.cw.send(first)
            return
        first = CAPABILITY_CODE.sub(
            lambda m: b"[CAPABILITY " + self.proxy.capabilities(m.group(1)) + b"]", first
        )
        if first.startswith(b"* "):
            first = CAPABILITY_LINE.sub(
                lambda m: m.group(1) + self.proxy.capabilities(m.group(2)), first
            )
            parts[0][0] = first
            if re.match(rb"\* \d+ FETCH ", first, re.I):
                self.fetch_response(parts)
            self.cw.send(b"".join(p[0] + (p[1] or b"") for p in parts))
            return

        # A tagged response.
        text, eol = split_eol(first)
        words = text.split(b" ", 2)
        tag = words[0]
        status = words[1].upper() if len(words) > 1 else b""
        with self.lock:
            info = self.pending.pop(tag, None) or {}
            if self.literal_tag == tag:
                self.literal_refused = True
                self.literal_tag = None
            if self.raw_tag == tag:
                self.raw_tag = None
            if info.get("select"):
                self.folder = info.get("folder") if status == b"OK" else None
            if info.get("close") and status == b"OK":
                self.folder = None
        if len(parts) == 1:
            if status == b"OK" and self.proxy.current().get("throttled"):
                text += b" [THROTTLED]"
            data = text + eol
        else:
            # Not seen from Dovecot: a tagged response with a literal goes as it is.
            parts[0][0] = first
            data = b"".join(p[0] + (p[1] or b"") for p in parts)
        if info.get("compress") and status == b"OK":
            self.sr.start_inflate()
            self.cr.start_inflate()
            self.sw.start_deflate()
            self.cw.send(data)
            self.cw.start_deflate()
        else:
            self.cw.send(data)
        if info.get("bye"):
            self.expire()

    def fetch_response(self, parts):
        for part in parts:
            part[0] = FETCH_GUID.sub(self.fetch_id, part[0])
            if part[1] is not None:
                before = LITERAL.split(part[0])[0]
                if BODY_ITEM.search(before):
                    self.proxy.body_relayed()
                    with self.lock:
                        folder = self.folder
                    self.proxy.log(
                        {
                            "conn": self.id,
                            "body": len(part[1]),
                            "folder": text_of(folder) if folder is not None else "",
                        }
                    )

    def fetch_id(self, m):
        if m.group(1) is not None:
            return m.group(1)
        n = self.proxy.id_for(unquote(m.group(2)))
        return b"X-GM-MSGID %d X-GM-THRID %d" % (n, n)

    def tagged_ok(self, tag, text):
        if self.proxy.current().get("throttled"):
            text += b" [THROTTLED]"
        return b"%s OK %s\r\n" % (tag, text)


def _int(value):
    """A positive count from the control file; anything else means never."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return float("inf")


def _names(value):
    if not isinstance(value, list):
        return set()
    return {str(v).upper().encode() for v in value}


def enable_without_qresync(text):
    """The arguments of `tag ENABLE ...` without QRESYNC."""
    return b" ".join(w for w in text.split(b" ")[2:] if w and w.upper() != b"QRESYNC")


def mailbox_argument(text):
    """The mailbox of `tag SELECT mailbox ...` (quoted or atom), unquoted."""
    parts = text.split(b" ", 2)
    if len(parts) < 3:
        return b""
    rest = parts[2]
    m = re.match(QUOTED, rest)
    if m:
        return unquote(m.group(0))
    return rest.split(b" ", 1)[0]


def fetch_items(line):
    """`X-GM-MSGID` / `X-GM-THRID` in a FETCH command's items become one `X-GUID`."""
    text, eol = split_eol(line)
    m = re.match(rb"(\S+ (?:UID )?FETCH \S+ )(.*)\Z", text, re.I | re.S)
    if not m or LITERAL.search(line):
        return line
    head, rest = m.groups()
    if rest.startswith(b"("):
        end = closing_paren(rest, 0)
        if end < 0:
            return line
        items, tail, open_, close = rest[1:end], rest[end + 1 :], b"(", b")"
    else:
        items, _, tail = rest.partition(b" ")
        tail = b" " + tail if tail else b""
        open_ = close = b""
    out, seen = [], False
    for item in split_items(items):
        if item.upper() in (b"X-GM-MSGID", b"X-GM-THRID"):
            if seen:
                continue
            seen = True
            item = b"X-GUID"
        out.append(item)
    return head + open_ + b" ".join(out) + close + tail + eol


def loopback_target(text):
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError("expected HOST:PORT")
    host = host.strip("[]")
    try:
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except OSError as e:
        raise argparse.ArgumentTypeError("cannot resolve %s: %s" % (host, e))
    for info in infos:
        if not ipaddress.ip_address(info[4][0]).is_loopback:
            raise argparse.ArgumentTypeError("%s is not a loopback address" % host)
    return (host, int(port))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", required=True, type=loopback_target, help="HOST:PORT (loopback)")
    ap.add_argument("--log", required=True)
    ap.add_argument("--control")
    ap.add_argument("--max-connections", type=int, default=15)
    ap.add_argument("--keep-qresync", action="store_true")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()

    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    proxy = Proxy(args)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", args.port))
    listener.listen(128)
    print(listener.getsockname()[1], flush=True)
    while True:
        try:
            client, _ = listener.accept()
        except OSError:
            time.sleep(0.05)
            continue
        conn = Connection(proxy, client)
        threading.Thread(target=conn.run, daemon=True).start()


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(0)
