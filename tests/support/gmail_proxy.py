#!/usr/bin/env python3
r"""An IMAP proxy that makes a private Dovecot behave like Gmail, for integration
tests (standard library only).

What it is for: Gmail cannot be reached from a test, yet idlewild must cope with
what makes Gmail different from Dovecot -- no QRESYNC and no NOTIFY, 64-bit
X-GM-MSGID / X-GM-THRID message ids (X-GM-EXT-1), a limit on simultaneous
connections, [THROTTLED] and [OVERQUOTA] responses, and sessions that end with a
BYE. The proxy sits between the client and a Dovecot and rewrites what passes.

    python3 gmail_proxy.py --target 127.0.0.1:PORT --log EVENTS.jsonl
        [--user U --password W] [--control CONTROL.json] [--max-connections 15]
        [--keep-qresync] [--port P]

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
  labels        X-GM-LABELS in FETCH and STORE, see below.

Labels. The Dovecot holds one folder per Gmail label (INBOX, Work, "[Gmail]/All
Mail", ...); a message has label L when a copy with the same X-GUID is in folder
L, and "[Gmail]/All Mail" holds every message. The label of a folder is its name
as Dovecot gives it (modified UTF-7), except for INBOX and the special-use
folders: INBOX -> \Inbox, \Sent -> \Sent, \Drafts -> \Draft, \Flagged ->
\Starred, \Important -> \Important, \Junk -> \Spam, \Trash -> \Trash, and \All
has no label. The label work is done on a side connection of the proxy's own
(--user / --password; one per client connection, opened when first needed,
never in the "open" / "close" events nor counted against --max-connections).
A command that asks for labels is held until every earlier command of its
connection has had its tagged response relayed, so that it sees their effects
and its answer keeps its place among theirs.
  FETCH         the item X-GM-LABELS (any case, among other items) is taken out
                of the command and X-GUID put in (once); before the command is
                forwarded the proxy maps every X-GUID to the folders holding it
                (LIST, then EXAMINE + `UID FETCH 1:* (X-GUID)` per selectable
                folder), and each `* N FETCH` with an X-GUID gets
                `X-GM-LABELS (...)`: system labels as quoted strings with an
                escaped backslash (`"\\Inbox"`, as Gmail sends them), other
                labels as an atom where the name is one, else quoted. Gmail's
                quirk is copied: the label of the folder the client has selected
                is left out. X-GM-MSGID / X-GM-THRID are sent only when the
                client asked for them (or for X-GUID).
  STORE         `[UID] STORE set [+|-]X-GM-LABELS[.SILENT] (labels)` (a single
                label may go without parentheses) is not forwarded. Labels are
                atoms, quoted strings or literals; \Inbox, \Sent, \Draft or
                \Drafts, \Starred, \Important, \Spam, \Trash (also quoted, any
                case) name the system folders, INBOX in any case is INBOX, any
                other label is a folder name (UTF-8 is turned into modified
                UTF-7). On the side connection the messages' X-GUIDs are fetched
                in the client's selected folder; `+` UID COPYs each message from
                there into every label folder lacking it (CREATEing the folder
                first if there is none: Gmail creates labels on use), `-` flags
                its copies in the label folders \Deleted and UID EXPUNGEs them,
                and the plain form does both, leaving the message in exactly
                the folders named (and All Mail; the selected folder too only if
                named). Then `* N FETCH (UID u X-GM-LABELS (...))` per message,
                the labels after the change, the selected folder's left out as
                in FETCH (not with .SILENT; N is the sequence number on the side
                connection, which is the client's as long as the client has seen
                every expunge) and `<tag> OK Success`. \All, the All Mail
                folder, an unknown system label, a \Noselect folder or a name
                Dovecot will not create: `<tag> NO [CANNOT] ...`, before any
                message is copied or expunged.
                Removing the label of the selected folder expunges the message
                there; the client sees it on its next command. A side connection
                that fails: `<tag> NO [UNAVAILABLE] ...` (FETCH too).
                A message whose labels were stored gets a new MODSEQ in All Mail,
                as on Gmail (Dovecot gives none to a copy made elsewhere): its
                copy there has the keyword $GmailProxyTouched set and removed.

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
  {"refuse": ["FETCH", ..],     commands of these names (as under "overquota") are
   "refusal": "NO ..."}        answered `<tag> REFUSAL` and not forwarded: a server
                               rationing the account in words of its own (Office 365's
                               "NO Request is throttled. Suggested Backoff Time: N
                               milliseconds", RFC 5530's [INUSE], [LIMIT], [UNAVAILABLE])
  {"bye_on_label_store": true} a STORE of labels is not carried out: the
                               connection gets `* BYE Session expired...`
                               and is closed instead
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
  {"conn": i, "labels": "+" | "-" | "=", "folders": ["NAME", ...], "guids": n}
        a label STORE carried out (after its "cmd" event): the folders its
        labels name, and how many distinct messages (X-GUIDs) it touched
Connections are numbered 1, 2, ... in the order accepted.

COMPRESS=DEFLATE (if the server offers it) works: after its OK the proxy inflates
and deflates both sides itself.
"""

import argparse
import base64
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
# The keyword set and taken away again on the All Mail copies of a message whose labels
# changed, to give them a new MODSEQ as Gmail does.
TOUCH = b"$GmailProxyTouched"

# A STORE of labels: `tag [UID] STORE set [(modifiers)] [+|-]X-GM-LABELS[.SILENT] ...`.
LABEL_STORE = re.compile(
    rb"\A(\S+) (UID )?STORE (\S+) (?:\([^)]*\) )?([+-]?)X-GM-LABELS(\.SILENT)?(?: (.*))?\Z",
    re.I | re.S,
)
# Special-use attribute -> Gmail's system label; \All has none.
SYSTEM_LABELS = [
    (b"\\SENT", b"\\Sent"),
    (b"\\DRAFTS", b"\\Draft"),
    (b"\\FLAGGED", b"\\Starred"),
    (b"\\IMPORTANT", b"\\Important"),
    (b"\\JUNK", b"\\Spam"),
    (b"\\TRASH", b"\\Trash"),
]
# A system label a client may name (upper case) -> the special-use of its folder.
LABEL_FOLDERS = {
    b"\\SENT": b"\\SENT",
    b"\\DRAFT": b"\\DRAFTS",
    b"\\DRAFTS": b"\\DRAFTS",
    b"\\STARRED": b"\\FLAGGED",
    b"\\IMPORTANT": b"\\IMPORTANT",
    b"\\SPAM": b"\\JUNK",
    b"\\TRASH": b"\\TRASH",
}
ATOM_SPECIALS = set(b'(){%*"\\]')
# The order of labels in X-GM-LABELS: these first, then the others by name.
LABEL_ORDER = [b"\\Inbox", b"\\Important", b"\\Starred", b"\\Sent", b"\\Draft", b"\\Spam", b"\\Trash"]


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


def tokens(data):
    """The tokens of IMAP data: atoms and quoted strings as bytes (unquoted),
    parenthesised lists as Python lists. Literals must have been inlined (see
    `inline`); NIL is the atom b"NIL"."""
    out, stack, cur, i, n = [], [], None, 0, len(data)
    cur = out
    while i < n:
        c = data[i]
        if c == 0x20:
            i += 1
        elif c == 0x28:
            new = []
            cur.append(new)
            stack.append(cur)
            cur = new
            i += 1
        elif c == 0x29:
            if stack:
                cur = stack.pop()
            i += 1
        elif c == 0x22:
            j, buf = i + 1, bytearray()
            while j < n and data[j] != 0x22:
                if data[j] == 0x5C and j + 1 < n:
                    j += 1
                buf.append(data[j])
                j += 1
            cur.append(bytes(buf))
            i = j + 1
        else:
            j = i
            while j < n and data[j] not in b" ()":
                j += 1
            cur.append(data[i:j])
            i = j
    return out


def inline(parts):
    """One line of text from a command or response read as [line, literal]
    parts: each `{N}` is replaced by its literal, quoted (for `tokens`)."""
    out = b""
    for line, literal in parts:
        text, _ = split_eol(line)
        if literal is not None:
            m = LITERAL.search(line)
            text = line[: m.start()] + quote(literal)
        out += text
    return out


def is_atom(name):
    return (
        bool(name)
        and all(0x21 <= c <= 0x7E and c not in ATOM_SPECIALS for c in name)
        and name.upper() != b"NIL"
    )


def label_text(label):
    """A label as Gmail writes it in X-GM-LABELS: system labels quoted with the
    backslash escaped, other names as an atom where they are one."""
    if label.startswith(b"\\") or not is_atom(label):
        return quote(label)
    return label


def mutf7(name):
    """A UTF-8 folder name in modified UTF-7 (RFC 3501 5.1.3); ASCII names that
    are not valid UTF-8 pass unchanged."""
    try:
        text = name.decode("utf-8")
    except UnicodeDecodeError:
        return name
    if text.isascii():
        return name
    out, pending = [], []

    def flush():
        if pending:
            raw = "".join(pending).encode("utf-16-be")
            out.append("&" + base64.b64encode(raw).decode().rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for ch in text:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return "".join(out).encode()


def is_inbox(name):
    return name is not None and name.upper() == b"INBOX"


def same_folder(a, b):
    return a == b or (is_inbox(a) and is_inbox(b))


class SideError(Exception):
    """The side connection failed, or the server refused what it needs."""


class SideRefused(SideError):
    """The server answered a side command with NO or BAD."""

    def __init__(self, status, text, message):
        super().__init__(message)
        self.status = status
        self.text = text


class Side:
    """The proxy's own plain connection to the target, for the label work of
    one client connection (used by that connection's client thread only)."""

    def __init__(self, target, user, password):
        self.target = target
        self.user = user
        self.password = password
        self.sock = None
        self.reader = None
        self.count = 0

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = None
        self.reader = None

    def _open(self):
        if self.user is None or self.password is None:
            raise SideError("no --user / --password given to the proxy")
        try:
            self.sock = socket.create_connection(self.target, timeout=60)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.reader = Reader(self.sock)
            greeting = self.reader.readline()
        except (OSError, Closed) as e:
            self.close()
            raise SideError("cannot reach the server: %s" % e)
        if not greeting.upper().startswith(b"* OK"):
            self.close()
            raise SideError("greeting: %s" % text_of(greeting.strip()))
        status, text, _ = self.run(
            b"LOGIN " + quote(self.user.encode()) + b" " + quote(self.password.encode())
        )
        if status != b"OK":
            self.close()
            raise SideError("LOGIN: %s" % text_of(text))

    def run(self, command):
        """Sends `command`; returns (status, text, untagged responses with the
        `* ` taken off and literals inlined)."""
        if self.sock is None:
            self._open()
        self.count += 1
        tag = b"P%d" % self.count
        untagged = []
        try:
            self.sock.sendall(tag + b" " + command + b"\r\n")
            while True:
                parts = []
                while True:
                    line = self.reader.readline()
                    m = LITERAL.search(line)
                    if not m:
                        parts.append([line, None])
                        break
                    parts.append([line, self.reader.read(int(m.group(1)))])
                text = inline(parts)
                if text.startswith(tag + b" "):
                    words = text.split(b" ", 2)
                    status = words[1].upper() if len(words) > 1 else b""
                    return status, words[2] if len(words) > 2 else b"", untagged
                if text.startswith(b"* "):
                    untagged.append(text[2:])
                elif text.startswith(b"+"):
                    raise SideError("unexpected continuation request")
        except (OSError, Closed) as e:
            self.close()
            raise SideError("connection lost: %s" % (e or "closed"))

    def ok(self, command):
        status, text, untagged = self.run(command)
        if status != b"OK":
            what = text_of(command.split(b" ", 1)[0])
            raise SideRefused(status, text, "%s: %s %s" % (what, text_of(status), text_of(text)))
        return untagged

    def folders(self):
        """[(name, attributes upper-cased)] of every folder, as LIST gives them."""
        status, _, untagged = self.run(b'LIST "" "*" RETURN (SPECIAL-USE)')
        if status != b"OK":
            untagged = self.ok(b'LIST "" "*"')
        out = []
        for text in untagged:
            if not text[:5].upper() == b"LIST ":
                continue
            t = tokens(text[5:])
            if len(t) < 3 or not isinstance(t[0], list) or isinstance(t[2], list):
                continue
            out.append((t[2], {a.upper() for a in t[0] if isinstance(a, bytes)}))
        return out

    def open_folder(self, name, write=False):
        """SELECTs (or EXAMINEs) `name`; returns its number of messages."""
        untagged = self.ok((b"SELECT " if write else b"EXAMINE ") + quote(name))
        exists = 0
        for text in untagged:
            m = re.match(rb"(\d+) EXISTS\Z", text, re.I)
            if m:
                exists = int(m.group(1))
        return exists

    def guids(self, command):
        """[(sequence number, uid, X-GUID)] from the `* N FETCH` responses of a
        FETCH command that asks for UID and X-GUID."""
        out = []
        for text in self.ok(command):
            m = re.match(rb"(\d+) FETCH ", text, re.I)
            if not m:
                continue
            t = tokens(text[m.end() :])
            if not t or not isinstance(t[0], list):
                continue
            items = t[0]
            fields = {}
            for k in range(0, len(items) - 1, 2):
                if isinstance(items[k], bytes):
                    fields[items[k].upper()] = items[k + 1]
            uid, guid = fields.get(b"UID"), fields.get(b"X-GUID")
            if isinstance(uid, bytes) and uid.isdigit() and isinstance(guid, bytes):
                out.append((int(m.group(1)), int(uid), guid))
        return out


class Labels:
    """Which folders hold which X-GUID, read on a side connection."""

    def __init__(self, side):
        listed = side.folders()
        self.folders = [name for name, _ in listed]
        self.attrs = {name: attrs for name, attrs in listed}
        # guid -> {folder: [uid, ...]}
        self.where = {}
        for name in self.folders:
            if not self.selectable(name):
                continue
            if side.open_folder(name) == 0:
                continue
            for _, uid, guid in side.guids(b"UID FETCH 1:* (UID X-GUID)"):
                self.where.setdefault(guid, {}).setdefault(name, []).append(uid)

    def selectable(self, name):
        attrs = self.attrs.get(name, set())
        return b"\\NOSELECT" not in attrs and b"\\NONEXISTENT" not in attrs

    def is_all(self, name):
        return b"\\ALL" in self.attrs.get(name, set())

    def label(self, name):
        """Gmail's label for folder `name`, or None (All Mail)."""
        if is_inbox(name):
            return b"\\Inbox"
        attrs = self.attrs.get(name, set())
        if b"\\ALL" in attrs:
            return None
        for use, label in SYSTEM_LABELS:
            if use in attrs:
                return label
        return name

    def special(self, use):
        for name in self.folders:
            if use in self.attrs[name]:
                return name
        return None

    def folder(self, label):
        """(folder named by a label a client sent, None) or (None, reason)."""
        if label.startswith(b"\\"):
            key = label.upper()
            if key == b"\\INBOX":
                return b"INBOX", None
            use = LABEL_FOLDERS.get(key)
            if use is None:
                return None, "no such system label"
            name = self.special(use)
            if name is None:
                return None, "no folder for this label"
            return name, None
        if is_inbox(label):
            return b"INBOX", None
        name = mutf7(label)
        if (
            not name
            or any(c < 0x20 or c == 0x7F or c in b"%*" for c in name)
            or name.startswith(b"/")
            or name.endswith(b"/")
            or b"//" in name
        ):
            return None, "not a valid label name"
        if name in self.attrs:
            if self.is_all(name):
                return None, "All Mail is not a label"
            if not self.selectable(name):
                return None, "not a folder that can hold messages"
        return name, None

    def text(self, folders, selected):
        """`X-GM-LABELS (...)` for a message in `folders`, the selected folder's
        label left out (Gmail's quirk)."""
        out = set()
        for name in folders:
            if selected is not None and same_folder(name, selected):
                continue
            label = self.label(name)
            if label is not None:
                out.add(label)

        def key(label):
            if label in LABEL_ORDER:
                return (0, LABEL_ORDER.index(label), label)
            return (1, 0, label)

        return b"X-GM-LABELS (" + b" ".join(label_text(l) for l in sorted(out, key=key)) + b")"


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
        self.user = args.user
        self.password = args.password
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
        # Tagged responses taken out of `pending` but not yet sent to the client,
        # and the condition a command that must wait for them waits on.
        self.relaying = 0
        self.answered = threading.Condition(self.lock)
        self.closed = False
        # The side connection for labels, opened when first needed.
        self.side = None

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
            if self.side is not None:
                self.side.close()
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
        with self.lock:
            self.closed = True
            self.answered.notify_all()
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
        elif name in _names(settings.get("refuse")) or (
            uid and b"UID " + name in _names(settings.get("refuse"))
        ):
            refusal = str(settings.get("refusal", "NO [UNAVAILABLE] Try again later.")).encode()
            answer = b"%s %s\r\n" % (tag, refusal)
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

        if answer is None and name == b"STORE" and LABEL_STORE.match(text):
            logged, full = self.absorb(first)
            self.proxy.log({"conn": self.id, "cmd": text_of(logged)})
            if settings.get("bye_on_label_store"):
                # The connection dies before the labels are stored.
                self.expire()
                return
            self.cw.send(self.store_labels(tag, full))
            if bye:
                self.expire()
            return

        fetch = None
        if answer is None and name == b"FETCH":
            _, want_labels, want_ids = fetch_items(first)
            if want_labels:
                # The labels are read once the earlier commands are answered, so
                # that what they changed is seen.
                self.wait_for_answers()
                with self.lock:
                    folder = self.folder
                labels = None
                if folder is not None:
                    try:
                        labels = Labels(self.side_connection())
                    except SideError as e:
                        answer = b"%s NO [UNAVAILABLE] X-GM-LABELS: %s\r\n" % (
                            tag,
                            str(e).encode("utf-8", "replace"),
                        )
                fetch = {"labels": labels, "selected": folder, "ids": want_ids}

        if answer is not None:
            logged, _ = self.absorb(first)
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
        if fetch is not None:
            info["fetch"] = fetch
        self.forward(first, tag, name, info)

    def absorb(self, line):
        """Reads the rest of a command the proxy answers itself; sends `+` for
        its synchronising literals. Returns the command as logged and as one
        line with its literals inlined (see `inline`)."""
        logged = b""
        parts = []
        while True:
            text, _ = split_eol(line)
            logged += text
            m = LITERAL.search(line)
            if not m:
                parts.append([line, None])
                return logged, inline(parts)
            if not m.group(2):
                self.cw.send(b"+ go ahead\r\n")
            parts.append([line, self.cr.read(int(m.group(1)))])
            line = self.cr.readline()

    def wait_for_answers(self):
        """Blocks until every command forwarded so far has had its tagged
        response sent to the client."""
        with self.lock:
            while (self.pending or self.relaying) and not self.closed:
                self.answered.wait(1.0)
            if self.closed:
                raise Closed()

    def side_connection(self):
        if self.side is None:
            self.side = Side(self.proxy.target, self.proxy.user, self.proxy.password)
        return self.side

    def store_labels(self, tag, full):
        """Carries out `tag [UID] STORE set [+|-]X-GM-LABELS[.SILENT] labels` on
        the side connection; returns the answer for the client."""
        m = LABEL_STORE.match(full)
        if not m:
            return b"%s BAD Invalid arguments.\r\n" % tag
        uid, sequence_set = m.group(2) is not None, m.group(3)
        mode = {b"+": "+", b"-": "-", b"": "="}[m.group(4)]
        silent = m.group(5) is not None
        given = tokens(m.group(6) or b"")
        if len(given) == 1 and isinstance(given[0], list):
            given = given[0]
        if not m.group(6) or any(isinstance(g, list) for g in given):
            return b"%s BAD Invalid arguments.\r\n" % tag
        self.wait_for_answers()
        with self.lock:
            selected = self.folder
        if selected is None:
            return b"%s BAD No mailbox selected.\r\n" % tag
        side = self.side_connection()
        try:
            labels = Labels(side)
            targets = []
            for label in given:
                name, why = labels.folder(label)
                if name is None:
                    return b"%s NO [CANNOT] Invalid label %s: %s.\r\n" % (
                        tag,
                        quote(label),
                        why.encode(),
                    )
                if name not in targets:
                    targets.append(name)
            # The selected folder as listed (INBOX may have been selected as "inbox").
            current = next((f for f in labels.folders if same_folder(f, selected)), selected)
            side.open_folder(current)
            try:
                found = side.guids(
                    (b"UID FETCH " if uid else b"FETCH ") + sequence_set + b" (UID X-GUID)"
                )
            except SideRefused as e:
                return b"%s %s %s\r\n" % (tag, e.status, e.text)
            first_uid = {}
            for _, u, g in found:
                first_uid.setdefault(g, u)
            self.proxy.log(
                {
                    "conn": self.id,
                    "labels": mode,
                    "folders": [text_of(t) for t in targets],
                    "guids": len(first_uid),
                }
            )
            if mode == "-":
                add = []
                remove = [t for t in targets if t in labels.attrs]
            else:
                for name in targets:
                    if name in labels.attrs:
                        continue
                    status, text, _ = side.run(b"CREATE " + quote(name))
                    if status != b"OK" and b"[ALREADYEXISTS]" not in text.upper():
                        return b"%s NO [CANNOT] Cannot create label %s: %s\r\n" % (
                            tag,
                            quote(name),
                            text,
                        )
                    labels.attrs[name] = set()
                    labels.folders.append(name)
                add = targets
                remove = []
                if mode == "=":
                    remove = [
                        f
                        for f in labels.folders
                        if f not in targets and labels.selectable(f) and not labels.is_all(f)
                    ]
            # Copies first, so that a message is never without its folders.
            side.open_folder(current)
            for name in add:
                if same_folder(name, current):
                    continue
                lacking = [g for g in first_uid if name not in labels.where.get(g, {})]
                if not lacking:
                    continue
                side.ok(
                    b"UID COPY " + uid_set(first_uid[g] for g in lacking) + b" " + quote(name)
                )
                for g in lacking:
                    labels.where.setdefault(g, {})[name] = []
            for name in remove:
                uids = [u for g in first_uid for u in labels.where.get(g, {}).get(name, [])]
                if not uids:
                    continue
                side.open_folder(name, write=True)
                side.ok(b"UID STORE " + uid_set(uids) + b" +FLAGS.SILENT (\\Deleted)")
                side.ok(b"UID EXPUNGE " + uid_set(uids))
                for g in first_uid:
                    labels.where.get(g, {}).pop(name, None)
            # Gmail gives a message whose labels changed a new MODSEQ, so a CONDSTORE
            # client sees the change in All Mail; Dovecot does not for a copy made or
            # expunged elsewhere. So the All Mail copies are touched: a keyword is set and
            # taken away again, which leaves their flags as they were.
            every = next((f for f in labels.folders if labels.is_all(f)), None)
            touched = [u for g in first_uid for u in labels.where.get(g, {}).get(every, [])]
            if every is not None and touched and (add or remove):
                side.open_folder(every, write=True)
                for sign in (b"+", b"-"):
                    side.ok(
                        b"UID STORE %s %sFLAGS.SILENT (%s)" % (uid_set(touched), sign, TOUCH)
                    )
        except SideError as e:
            return b"%s NO [UNAVAILABLE] X-GM-LABELS: %s\r\n" % (
                tag,
                str(e).encode("utf-8", "replace"),
            )
        out = b""
        if not silent:
            for n, u, g in found:
                out += b"* %d FETCH (UID %d %s)\r\n" % (
                    n,
                    u,
                    labels.text(labels.where.get(g, {}).keys(), selected),
                )
        return out + self.tagged_ok(tag, b"Success")

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
            line = fetch_items(line)[0]
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
            info = self.pending.pop(tag, None)
            known = info is not None
            info = info or {}
            if known:
                self.relaying += 1
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
        try:
            if info.get("compress") and status == b"OK":
                self.sr.start_inflate()
                self.cr.start_inflate()
                self.sw.start_deflate()
                self.cw.send(data)
                self.cw.start_deflate()
            else:
                self.cw.send(data)
        finally:
            if known:
                with self.lock:
                    self.relaying -= 1
                    self.answered.notify_all()
        if info.get("bye"):
            self.expire()

    def fetch_response(self, parts):
        # A command that asks for labels is forwarded when no earlier one is
        # pending, so the oldest pending command is the one answered.
        with self.lock:
            oldest = next(iter(self.pending.values()), None)
        fetch = oldest.get("fetch") if oldest else None
        for part in parts:
            part[0] = FETCH_GUID.sub(lambda m: self.fetch_id(m, fetch), part[0])
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

    def fetch_id(self, m, fetch):
        if m.group(1) is not None:
            return m.group(1)
        guid = unquote(m.group(2))
        n = self.proxy.id_for(guid)
        ids = b"X-GM-MSGID %d X-GM-THRID %d" % (n, n)
        if fetch is None or fetch["labels"] is None:
            return ids
        labels = fetch["labels"]
        text = labels.text(labels.where.get(guid, {}).keys(), fetch["selected"])
        return ids + b" " + text if fetch["ids"] else text

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
    """`X-GM-MSGID` / `X-GM-THRID` in a FETCH command's items become one `X-GUID`,
    and `X-GM-LABELS` is taken out (an `X-GUID` put in for it). Returns (line,
    whether labels were asked for, whether ids (or X-GUID) were)."""
    text, eol = split_eol(line)
    m = re.match(rb"(\S+ (?:UID )?FETCH \S+ )(.*)\Z", text, re.I | re.S)
    if not m or LITERAL.search(line):
        return line, False, False
    head, rest = m.groups()
    if rest.startswith(b"("):
        end = closing_paren(rest, 0)
        if end < 0:
            return line, False, False
        items, tail, open_, close = rest[1:end], rest[end + 1 :], b"(", b")"
    else:
        items, _, tail = rest.partition(b" ")
        tail = b" " + tail if tail else b""
        open_ = close = b""
    out, seen, labels = [], False, False
    for item in split_items(items):
        upper = item.upper()
        if upper == b"X-GM-LABELS":
            labels = True
            continue
        if upper in (b"X-GM-MSGID", b"X-GM-THRID", b"X-GUID"):
            if seen:
                continue
            seen = True
            item = b"X-GUID"
        out.append(item)
    ids = seen
    if labels and not seen:
        out.append(b"X-GUID")
    return head + open_ + b" ".join(out) + close + tail + eol, labels, ids


def uid_set(uids):
    """A UID set for the numbers given: `1:3,7`."""
    ranges = []
    for u in sorted(set(uids)):
        if ranges and u == ranges[-1][1] + 1:
            ranges[-1][1] = u
        else:
            ranges.append([u, u])
    return b",".join(b"%d" % a if a == b else b"%d:%d" % (a, b) for a, b in ranges)


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
    ap.add_argument("--user", help="for the side connection that reads and changes labels")
    ap.add_argument("--password")
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
