#!/usr/bin/env python3
"""Independent IMAP client for integration tests (standard library only).

Tests use it to change and inspect the server without involving the code
under test:

    python3 imapctl.py --host H --port P --user U --password W [--tls|--starttls] [--cafile F]

reads a JSON array of operations on stdin, runs them in order on one
connection and prints {"results": [...]} (one entry per operation) on stdout.
On any failure it exits non-zero with the reason on stderr.

Folder names are UTF-8 with "/" as the hierarchy separator; they are
converted to and from modified UTF-7 (RFC 3501 5.1.3) here.

Operations ("op" plus arguments -> result):
  create        folder                          -> null
  delete_folder folder                          -> null
  rename_folder folder, to                      -> null
  append        folder, message (text) or message_base64, flags?, date?
                                                -> UID from APPENDUID or null
  append_file   folder, path, flags?, date?     -> UID from APPENDUID or null
  list                                          -> [folder, ...]
  dump          folder                          -> [{uid, flags, size, message_id, sha256}]
  dump_all                                      -> {folder: dump, ...} (selectable folders)
  store         folder, uid (int|[int]|"set"), flags, mode ("+", "-" or "=")
                                                -> null
  expunge       folder, uids                    -> null
  move / copy   folder, uids, to                -> {"uidvalidity", "uids": [new UIDs]} or null
  status        folder                          -> {uidvalidity, uidnext, messages}
  capability                                    -> [capability, ...]
  noop                                          -> null

"date" is in Unix seconds. APPEND normalises line endings to CRLF (imaplib
does so, and IMAP requires it). "sha256" is over the exact bytes of
BODY[] as fetched. \\Recent is left out of flags: it depends on the session.
"""

import argparse
import base64
import email.parser
import hashlib
import imaplib
import json
import re
import ssl
import sys


class OpError(Exception):
    pass


# --- modified UTF-7 -----------------------------------------------------------


def mutf7_encode(name):
    out = []
    pending = []

    def flush():
        if pending:
            raw = "".join(pending).encode("utf-16-be")
            b64 = base64.b64encode(raw).decode("ascii").rstrip("=").replace("/", ",")
            out.append("&" + b64 + "-")
            pending.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return "".join(out)


def mutf7_decode(name):
    def repl(m):
        body = m.group(1)
        if body == "":
            return "&"
        b64 = body.replace(",", "/")
        b64 += "=" * (-len(b64) % 4)
        return base64.b64decode(b64).decode("utf-16-be")

    return re.sub(r"&([A-Za-z0-9+,]*)-", repl, name)


def quote(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def mailbox_arg(folder):
    if not isinstance(folder, str) or not folder:
        raise OpError("folder must be a non-empty string")
    return quote(mutf7_encode(folder))


# --- helpers around imaplib ---------------------------------------------------


def check(resp, what):
    typ, data = resp
    if typ != "OK":
        raise OpError("%s failed: %s %s" % (what, typ, render(data)))
    return data


def render(data):
    parts = []
    for d in data or []:
        if isinstance(d, tuple):
            d = d[0]
        if isinstance(d, bytes):
            d = d.decode("utf-8", "replace")
        parts.append(str(d))
    return " ".join(parts)


def flag_list(flags):
    if flags is None:
        return []
    if not isinstance(flags, list) or not all(isinstance(f, str) for f in flags):
        raise OpError("flags must be a list of strings")
    return flags


def uid_set(uids):
    if isinstance(uids, bool):
        raise OpError("bad UID set")
    if isinstance(uids, int):
        return str(uids)
    if isinstance(uids, str) and re.fullmatch(r"[0-9:*,]+", uids):
        return uids
    if isinstance(uids, list) and uids and all(isinstance(u, int) and not isinstance(u, bool) for u in uids):
        return ",".join(str(u) for u in uids)
    raise OpError("bad UID set: %r" % (uids,))


def parse_uid_set(text):
    """'3:5,9' -> [3, 4, 5, 9]"""
    out = []
    for part in text.split(","):
        if ":" in part:
            lo, hi = (int(x) for x in part.split(":"))
            if lo > hi:
                lo, hi = hi, lo
            out.extend(range(lo, hi + 1))
        else:
            out.append(int(part))
    return out


LIST_RE = re.compile(rb'^\((?P<attrs>[^)]*)\) (?P<delim>NIL|"(?:[^"\\]|\\.)*") (?P<name>.*)$', re.S)


def list_folders(imap):
    """[(name, attrs)] for every mailbox, names decoded to UTF-8."""
    data = check(imap.list('""', '"*"'), "LIST")
    folders = []
    for item in data:
        if item is None:
            continue
        if isinstance(item, tuple):
            # the name came as a literal
            m = LIST_RE.match(item[0])
            if not m:
                raise OpError("unparsable LIST response %r" % (item,))
            raw = item[1]
        else:
            m = LIST_RE.match(item)
            if not m:
                raise OpError("unparsable LIST response %r" % (item,))
            raw = m.group("name")
            if raw.startswith(b'"'):
                raw = re.sub(rb"\\(.)", rb"\1", raw[1:-1])
        attrs = [a.lower() for a in m.group("attrs").decode("ascii", "replace").split()]
        folders.append((mutf7_decode(raw.decode("ascii", "replace")), attrs))
    return folders


def select(imap, folder, readonly):
    data = check(imap.select(mailbox_arg(folder), readonly=readonly), "SELECT " + folder)
    return int(data[0]) if data and data[0] else 0


FETCH_UID = re.compile(rb"\bUID (\d+)")
FETCH_SIZE = re.compile(rb"\bRFC822\.SIZE (\d+)")
FETCH_FLAGS = re.compile(rb"\bFLAGS \(([^)]*)\)")
FETCH_BODY = re.compile(rb"\bBODY\[\] \{\d+\}$")


def dump(imap, folder):
    if select(imap, folder, readonly=True) == 0:
        return []
    data = check(imap.uid("FETCH", "1:*", "(UID FLAGS RFC822.SIZE BODY.PEEK[])"), "UID FETCH " + folder)
    # imaplib yields (prefix-with-literal-announcement, literal) tuples, each
    # followed by the bytes after the literal (b")" or more items + b")").
    msgs = []
    i = 0
    while i < len(data):
        item = data[i]
        i += 1
        if not isinstance(item, tuple):
            continue
        meta, body = item
        if not FETCH_BODY.search(meta):
            raise OpError("unexpected FETCH response %r" % (meta,))
        if i < len(data) and isinstance(data[i], bytes):
            meta = meta + b" " + data[i]
            i += 1
        uid = FETCH_UID.search(meta)
        size = FETCH_SIZE.search(meta)
        flags = FETCH_FLAGS.search(meta)
        if not (uid and size and flags):
            raise OpError("incomplete FETCH response %r" % (meta,))
        headers = email.parser.BytesHeaderParser().parsebytes(body)
        message_id = headers.get("Message-ID")
        msgs.append(
            {
                "uid": int(uid.group(1)),
                "flags": sorted(f for f in flags.group(1).decode("utf-8", "replace").split() if f != "\\Recent"),
                "size": int(size.group(1)),
                "message_id": str(message_id).strip() if message_id is not None else None,
                "sha256": hashlib.sha256(body).hexdigest(),
            }
        )
    msgs.sort(key=lambda m: m["uid"])
    return msgs


def append(imap, op, message):
    flags = flag_list(op.get("flags"))
    date = op.get("date")
    if date is not None and not isinstance(date, (int, float)):
        raise OpError("date must be Unix seconds")
    typ, data = imap.append(
        mailbox_arg(op.get("folder")),
        "(" + " ".join(flags) + ")" if flags else None,
        imaplib.Time2Internaldate(date) if date is not None else None,
        message,
    )
    if typ != "OK":
        raise OpError("APPEND to %s failed: %s" % (op.get("folder"), render(data)))
    m = re.search(rb"\[APPENDUID \d+ (\d+)\]", data[0] if data and data[0] else b"")
    return int(m.group(1)) if m else None


def copy_or_move(imap, op, command):
    select(imap, op.get("folder"), readonly=False)
    imap.untagged_responses.pop("COPYUID", None)
    typ, data = imap.uid(command, uid_set(op.get("uids")), mailbox_arg(op.get("to")))
    if typ != "OK":
        raise OpError("UID %s failed: %s" % (command, render(data)))
    # COPYUID comes in the tagged OK for COPY, but in an untagged OK for MOVE,
    # which imaplib files under the response code's name.
    m = re.search(r"\[COPYUID (\d+) [0-9:,]+ ([0-9:,]+)\]", render(data))
    if m:
        return {"uidvalidity": int(m.group(1)), "uids": parse_uid_set(m.group(2))}
    for v in imap.untagged_responses.pop("COPYUID", []):
        m = re.fullmatch(r"(\d+) [0-9:,]+ ([0-9:,]+)", render([v]).strip())
        if m:
            return {"uidvalidity": int(m.group(1)), "uids": parse_uid_set(m.group(2))}
    return None


def run_op(imap, op):
    if not isinstance(op, dict) or not isinstance(op.get("op"), str):
        raise OpError("each operation must be an object with an \"op\" string")
    name = op["op"]
    if name == "create":
        check(imap.create(mailbox_arg(op.get("folder"))), "CREATE " + str(op.get("folder")))
        return None
    if name == "delete_folder":
        check(imap.delete(mailbox_arg(op.get("folder"))), "DELETE " + str(op.get("folder")))
        return None
    if name == "rename_folder":
        check(imap.rename(mailbox_arg(op.get("folder")), mailbox_arg(op.get("to"))), "RENAME")
        return None
    if name == "append":
        if "message_base64" in op:
            message = base64.b64decode(op["message_base64"])
        elif isinstance(op.get("message"), str):
            message = op["message"].encode("utf-8", "surrogateescape")
        else:
            raise OpError("append needs \"message\" or \"message_base64\"")
        return append(imap, op, message)
    if name == "append_file":
        with open(op.get("path"), "rb") as f:
            message = f.read()
        return append(imap, op, message)
    if name == "list":
        return [name for name, _ in list_folders(imap)]
    if name == "dump":
        return dump(imap, op.get("folder"))
    if name == "dump_all":
        result = {}
        for folder, attrs in list_folders(imap):
            if "\\noselect" in attrs or "\\nonexistent" in attrs:
                continue
            result[folder] = dump(imap, folder)
        return result
    if name == "store":
        mode = op.get("mode", "+")
        item = {"+": "+FLAGS.SILENT", "-": "-FLAGS.SILENT", "=": "FLAGS.SILENT"}.get(mode)
        if item is None:
            raise OpError("store mode must be +, - or =")
        select(imap, op.get("folder"), readonly=False)
        flags = "(" + " ".join(flag_list(op.get("flags"))) + ")"
        check(imap.uid("STORE", uid_set(op.get("uid", op.get("uids"))), item, flags), "UID STORE")
        return None
    if name == "expunge":
        select(imap, op.get("folder"), readonly=False)
        uids = uid_set(op.get("uids"))
        check(imap.uid("STORE", uids, "+FLAGS.SILENT", "(\\Deleted)"), "UID STORE \\Deleted")
        check(imap.uid("EXPUNGE", uids), "UID EXPUNGE")
        return None
    if name == "move":
        return copy_or_move(imap, op, "MOVE")
    if name == "copy":
        return copy_or_move(imap, op, "COPY")
    if name == "status":
        data = check(imap.status(mailbox_arg(op.get("folder")), "(UIDVALIDITY UIDNEXT MESSAGES)"), "STATUS")
        text = render(data)
        result = {}
        for key in ("UIDVALIDITY", "UIDNEXT", "MESSAGES"):
            m = re.search(r"\b%s (\d+)" % key, text)
            if not m:
                raise OpError("STATUS response lacks %s: %s" % (key, text))
            result[key.lower()] = int(m.group(1))
        return result
    if name == "capability":
        # imaplib also keeps the [CAPABILITY ...] code of the LOGIN reply.
        imap.untagged_responses.pop("CAPABILITY", None)
        data = check(imap.capability(), "CAPABILITY")
        return list(dict.fromkeys(render(data).split()))
    if name == "noop":
        check(imap.noop(), "NOOP")
        return None
    raise OpError("unknown op %r" % (name,))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--tls", action="store_true", help="implicit TLS")
    ap.add_argument("--starttls", action="store_true")
    ap.add_argument("--cafile", help="trust anchor for --tls/--starttls")
    ap.add_argument("--timeout", type=float, default=60.0)
    args = ap.parse_args()

    try:
        ops = json.load(sys.stdin)
    except ValueError as e:
        sys.exit("imapctl: stdin is not JSON: %s" % e)
    if not isinstance(ops, list):
        sys.exit("imapctl: stdin must be a JSON array of operations")

    ctx = ssl.create_default_context(cafile=args.cafile) if (args.tls or args.starttls) else None
    results = []
    try:
        if args.tls:
            imap = imaplib.IMAP4_SSL(args.host, args.port, ssl_context=ctx, timeout=args.timeout)
        else:
            imap = imaplib.IMAP4(args.host, args.port, timeout=args.timeout)
            if args.starttls:
                imap.starttls(ssl_context=ctx)
        imap.login(args.user, args.password)
        for n, op in enumerate(ops):
            try:
                results.append(run_op(imap, op))
            except (OpError, imaplib.IMAP4.error, OSError, ValueError, TypeError) as e:
                raise OpError("operation %d (%s): %s" % (n, json.dumps(op)[:200], e)) from e
        try:
            imap.logout()
        except (imaplib.IMAP4.error, OSError):
            pass
    except (OpError, imaplib.IMAP4.error, OSError) as e:
        sys.exit("imapctl: %s" % e)

    sys.stdout.buffer.write(json.dumps({"results": results}, ensure_ascii=False).encode("utf-8"))
    sys.stdout.buffer.write(b"\n")


if __name__ == "__main__":
    main()
