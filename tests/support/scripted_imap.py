#!/usr/bin/env python3
"""A scripted IMAP4rev1 responder for integration tests (standard library only).

What it is for: serving folder names that no real server here accepts -- names
with control characters, a level longer than a directory name may be, `..`,
`.`, `/abs`, `a//b` -- so the real idlewild binary can be run against a LIST
that carries them. Dovecot refuses to create such mailboxes, yet a server (or
a hostile one) may still send them, and idlewild must keep them from touching
anything outside its Maildir.

    python3 scripted_imap.py --spec SPEC.json --log COMMANDS.jsonl

SPEC.json: {"folders": [{"name": "...", "messages": [{"flags": ["\\\\Seen"],
"body": "..."}]}]}. Names and bodies are bytes written one character per byte
(Latin-1), so any byte can be given; names are sent in LIST as they are (no
modified UTF-7 is applied). UIDs are 1, 2, ... in the order given, every folder
has UIDVALIDITY 1 and the hierarchy delimiter "/".

It binds 127.0.0.1 on a free port, prints the port on stdout (one line), and
serves connections (each on its own thread) until it is killed. Every command
received -- literals included, credentials too, they are the test's -- is
appended to the log as one JSON string (bytes as Latin-1) per line, written
before the command is answered.

What it answers, and how:
  CAPABILITY   "IMAP4rev1" only (no CONDSTORE, QRESYNC, LIST-STATUS, IDLE,
               NOTIFY, UIDPLUS, LITERAL+), so a client takes its simplest path
  LOGIN        any user and password
  LIST "" pat  every folder, whatever the pattern ("%" and "*" alike); a name
               with a control character or 8-bit byte is sent as a literal
               (RFC 3501 4.3), one with '"' or '\\' quoted with escapes (9)
  SELECT/EXAMINE  FLAGS, EXISTS, RECENT, UIDVALIDITY, UIDNEXT; EXAMINE
               completes with [READ-ONLY], SELECT with [READ-WRITE]
  STATUS       MESSAGES, UIDNEXT, UIDVALIDITY, UNSEEN, RECENT
  FETCH / UID FETCH  UID, FLAGS, RFC822.SIZE, INTERNALDATE, BODY[] and
               BODY.PEEK[] whole or partial (<offset.length>)
  NOOP, CHECK, CLOSE, LOGOUT
  anything else: a tagged BAD (write commands included: nothing is changed)
"""

import argparse
import json
import re
import socket
import socketserver
import sys
import threading

CAPABILITIES = "IMAP4rev1"
INTERNALDATE = '"01-Jan-2024 00:00:00 +0000"'


class Folder:
    def __init__(self, spec):
        self.name = spec["name"].encode("latin-1")
        self.messages = []
        for uid, m in enumerate(spec.get("messages", []), start=1):
            body = m["body"].encode("latin-1")
            self.messages.append((uid, list(m.get("flags", [])), body))


def imap_string(name):
    """`name` (bytes) as an IMAP string: a literal where a quoted string
    cannot or should not carry it (CR, LF, NUL and other control characters,
    8-bit bytes), else a quoted string with '"' and '\\' escaped."""
    if any(b < 0x20 or b >= 0x7F for b in name):
        return b"{%d}\r\n" % len(name) + name
    return b'"' + re.sub(rb'(["\\])', rb"\\\1", name) + b'"'


class Parser:
    """Splits a received command into tokens: atoms, strings (quoted or
    literal, as bytes) and parenthesised lists kept as raw bytes."""

    def __init__(self, data):
        self.data = data
        self.at = 0

    def skip_spaces(self):
        while self.at < len(self.data) and self.data[self.at] == 0x20:
            self.at += 1

    def done(self):
        self.skip_spaces()
        return self.at >= len(self.data)

    def token(self):
        self.skip_spaces()
        d = self.data
        if self.at >= len(d):
            raise ValueError("missing argument")
        c = d[self.at]
        if c == ord('"'):
            out = bytearray()
            self.at += 1
            while d[self.at] != ord('"'):
                if d[self.at] == ord("\\"):
                    self.at += 1
                out.append(d[self.at])
                self.at += 1
            self.at += 1
            return bytes(out)
        if c == ord("{"):
            m = re.match(rb"\{(\d+)\+?\}\r\n", d[self.at :])
            if not m:
                raise ValueError("bad literal")
            start = self.at + m.end()
            n = int(m.group(1))
            self.at = start + n
            return d[start : start + n]
        if c == ord("("):
            depth = 0
            start = self.at
            while True:
                if d[self.at] == ord("("):
                    depth += 1
                elif d[self.at] == ord(")"):
                    depth -= 1
                self.at += 1
                if depth == 0:
                    return d[start : self.at]
        m = re.match(rb"[^ ]+", d[self.at :])
        self.at += m.end()
        return m.group(0)

    def rest(self):
        self.skip_spaces()
        out = self.data[self.at :]
        self.at = len(self.data)
        return out


def parse_set(text, largest):
    """A sequence set (RFC 3501 9 `sequence-set`) as a predicate on numbers."""
    ranges = []
    for part in text.split(b","):
        lo, _, hi = part.partition(b":")
        lo = largest if lo == b"*" else int(lo)
        hi = lo if not hi else (largest if hi == b"*" else int(hi))
        ranges.append((min(lo, hi), max(lo, hi)))
    return lambda n: any(lo <= n <= hi for lo, hi in ranges)


def fetch_items(text):
    """The items of a FETCH as a list of upper-cased byte strings."""
    text = text.strip()
    if text.startswith(b"(") and text.endswith(b")"):
        text = text[1:-1]
    macros = {
        b"ALL": [b"FLAGS", b"INTERNALDATE", b"RFC822.SIZE"],
        b"FAST": [b"FLAGS", b"INTERNALDATE", b"RFC822.SIZE"],
        b"FULL": [b"FLAGS", b"INTERNALDATE", b"RFC822.SIZE"],
    }
    if text.upper() in macros:
        return macros[text.upper()]
    # A section may hold a parenthesised list of header names (HEADER.FIELDS).
    return [i.upper() for i in re.findall(rb"[^ \[]+(?:\[[^\]]*\](?:<[\d.]+>)?)?", text)]


class Handler(socketserver.StreamRequestHandler):
    def setup(self):
        super().setup()
        self.selected = None

    def send(self, data):
        self.wfile.write(data)
        self.wfile.flush()

    def read_command(self):
        """One whole command, literals included; None at end of stream."""
        data = b""
        while True:
            line = self.rfile.readline()
            if not line:
                return None
            data += line
            m = re.search(rb"\{(\d+)(\+?)\}\r\n$", line)
            if not m:
                return data.rstrip(b"\r\n")
            if not m.group(2):
                self.send(b"+ go ahead\r\n")
            data += self.rfile.read(int(m.group(1)))

    def handle(self):
        self.send(b"* OK [CAPABILITY %s] scripted responder ready\r\n" % CAPABILITIES.encode())
        while True:
            command = self.read_command()
            if command is None:
                return
            self.server.record(command)
            p = Parser(command)
            tag = b"*"
            try:
                tag = p.token()
                name = p.token().upper()
                if name == b"UID":
                    name = b"UID " + p.token().upper()
                answer = getattr(self, "do_" + name.decode().replace(" ", "_"), None)
                if answer is None:
                    self.send(tag + b" BAD unknown command\r\n")
                    continue
                if answer(tag, p) == "logout":
                    return
            except (ValueError, IndexError, KeyError) as e:
                self.send(b"%s BAD %s\r\n" % (tag, str(e).encode()))
            except OSError:
                return

    def do_CAPABILITY(self, tag, p):
        self.send(b"* CAPABILITY %s\r\n%s OK done\r\n" % (CAPABILITIES.encode(), tag))

    def do_LOGIN(self, tag, p):
        p.token()
        p.token()
        self.send(tag + b" OK logged in\r\n")

    def do_NOOP(self, tag, p):
        self.send(tag + b" OK done\r\n")

    do_CHECK = do_NOOP

    def do_CLOSE(self, tag, p):
        self.selected = None
        self.send(tag + b" OK closed\r\n")

    def do_LOGOUT(self, tag, p):
        self.send(b"* BYE bye\r\n%s OK done\r\n" % tag)
        return "logout"

    def do_LIST(self, tag, p):
        p.token()
        pattern = p.token()
        if pattern == b"":
            # RFC 3501 6.3.8: an empty pattern asks for the delimiter.
            self.send(b'* LIST (\\Noselect) "/" ""\r\n')
        else:
            for f in self.server.folders:
                self.send(b'* LIST () "/" ' + imap_string(f.name) + b"\r\n")
        self.send(tag + b" OK done\r\n")

    def find(self, name):
        for f in self.server.folders:
            if f.name == name or (f.name.upper() == b"INBOX" and name.upper() == b"INBOX"):
                return f
        return None

    def select(self, tag, p, mode):
        f = self.find(p.token())
        if f is None:
            self.selected = None
            self.send(tag + b" NO no such folder\r\n")
            return
        self.selected = f
        uidnext = len(f.messages) + 1
        self.send(
            b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"
            b"* OK [PERMANENTFLAGS ()] read-only\r\n"
            b"* %d EXISTS\r\n* 0 RECENT\r\n"
            b"* OK [UIDVALIDITY 1] ok\r\n* OK [UIDNEXT %d] ok\r\n"
            b"%s OK [%s] done\r\n" % (len(f.messages), uidnext, tag, mode)
        )

    def do_SELECT(self, tag, p):
        self.select(tag, p, b"READ-WRITE")

    def do_EXAMINE(self, tag, p):
        self.select(tag, p, b"READ-ONLY")

    def do_STATUS(self, tag, p):
        name = p.token()
        f = self.find(name)
        if f is None:
            self.send(tag + b" NO no such folder\r\n")
            return
        n = len(f.messages)
        values = {
            b"MESSAGES": n,
            b"UIDNEXT": n + 1,
            b"UIDVALIDITY": 1,
            b"UNSEEN": sum(1 for _, flags, _ in f.messages if "\\Seen" not in flags),
            b"RECENT": 0,
        }
        items = p.token().strip(b"()").upper().split()
        answer = b" ".join(b"%s %d" % (i, values[i]) for i in items)
        self.send(b"* STATUS %s (%s)\r\n%s OK done\r\n" % (imap_string(f.name), answer, tag))

    def do_UID_FETCH(self, tag, p):
        self.fetch(tag, p, by_uid=True)

    def do_FETCH(self, tag, p):
        self.fetch(tag, p, by_uid=False)

    def fetch(self, tag, p, by_uid):
        f = self.selected
        if f is None:
            self.send(tag + b" BAD no folder selected\r\n")
            return
        # UIDs are 1, 2, ... so the largest UID is also the message count.
        wanted = parse_set(p.token(), len(f.messages))
        items = fetch_items(p.rest())
        if by_uid and b"UID" not in items:
            items.insert(0, b"UID")
        for seq, (uid, flags, body) in enumerate(f.messages, start=1):
            if not wanted(uid if by_uid else seq):
                continue
            parts = []
            for item in items:
                if item == b"UID":
                    parts.append(b"UID %d" % uid)
                elif item == b"FLAGS":
                    parts.append(b"FLAGS (%s)" % " ".join(flags).encode())
                elif item == b"RFC822.SIZE":
                    parts.append(b"RFC822.SIZE %d" % len(body))
                elif item == b"INTERNALDATE":
                    parts.append(b"INTERNALDATE " + INTERNALDATE.encode())
                else:
                    m = re.fullmatch(rb"BODY(?:\.PEEK)?\[\](?:<(\d+)\.(\d+)>)?", item)
                    if not m:
                        raise ValueError("unsupported fetch item %s" % item.decode())
                    if m.group(1) is None:
                        parts.append(b"BODY[] {%d}\r\n" % len(body) + body)
                    else:
                        start, length = int(m.group(1)), int(m.group(2))
                        piece = body[start : start + length]
                        parts.append(b"BODY[]<%d> {%d}\r\n" % (start, len(piece)) + piece)
            self.send(b"* %d FETCH (%s)\r\n" % (seq, b" ".join(parts)))
        self.send(tag + b" OK done\r\n")


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, folders, log_path):
        super().__init__(("127.0.0.1", 0), Handler)
        self.folders = folders
        self.log = open(log_path, "a", encoding="utf-8")
        self.log_lock = threading.Lock()

    def record(self, command):
        with self.log_lock:
            self.log.write(json.dumps(command.decode("latin-1")) + "\n")
            self.log.flush()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", required=True)
    ap.add_argument("--log", required=True)
    args = ap.parse_args()
    with open(args.spec, encoding="utf-8") as f:
        spec = json.load(f)
    server = Server([Folder(s) for s in spec["folders"]], args.log)
    print(server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
