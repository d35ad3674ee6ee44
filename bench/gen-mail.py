#!/usr/bin/env python3
"""gen-mail.py -- deterministic generator of a realistic mail corpus.

Writes messages DIRECTLY into a server-side Maildir++ tree (the layout Dovecot
uses with ``mail_location = maildir:~/Maildir``) and then lets Dovecot index it
with ``doveadm force-resync``; 100k messages take about a minute or two instead of
hours of one-APPEND-at-a-time.

    gen-mail.py --dovecot-dir DIR --count 10000 [--seed 42]
        -> DIR/home/bench/Maildir, owner idlewild-bench (BENCH_MAIL_OS_USER), then
           doveadm -c DIR/dovecot.conf force-resync / mailbox subscribe
    gen-mail.py --maildir PATH --count N [--no-doveadm]
        -> just write the Maildir++ tree

Corpus properties (all drawn from the seed, identical on every run):
  * folders: INBOX, Archive, Archive/2019, Sent, Lists/rust, Lists/debian,
    "Entwürfe" (non-ASCII name, modified UTF-7 on the wire: Entw&APw-rfe)
  * size: text part log-normal with a median ~3 KB -> whole message median ~4 KB;
    5% carry a 5-50 KB attachment, 2% a 50-200 KB one, 0.5% a 200 KB-2 MB one
    (random bytes, base64)
  * real RFC 5322 headers (Received, Date, From, To, Cc, Subject incl. RFC 2047
    encoded words, Message-ID, In-Reply-To/References threads, List-Id, MIME);
    ~25% multipart (alternative text+html, or mixed with attachment)
  * flags: \\Seen ~80%, \\Flagged ~3%, \\Answered ~10%; drafts carry \\Draft
  * dates spread over 2019-01-01 .. 2024-12-31; file mtime = INTERNALDATE = Date

The module is also imported by mutate.py (``load_genmail()``) so appended
messages look like the corpus.
"""
from __future__ import annotations

import argparse
import base64
import datetime as _dt
import email.utils
import hashlib
import math
import os
import random
import subprocess
import sys
import time

# ---------------------------------------------------------------------------
# folders: (IMAP name with "/" separator, share of messages, kind)
FOLDERS = [
    ("INBOX", 0.28, "inbox"),
    ("Archive", 0.25, "inbox"),
    ("Archive/2019", 0.08, "inbox"),
    ("Sent", 0.14, "sent"),
    ("Lists/rust", 0.12, "list:rust"),
    ("Lists/debian", 0.11, "list:debian"),
    ("Entwürfe", 0.02, "drafts"),
]
FOLDER_NAMES = [f[0] for f in FOLDERS]


def use_folders(total: int) -> None:
    """Spread the corpus over `total` folders: the seven above keep 60 % of the messages
    (in their proportions), and `total - 7` mailing-list folders Lists/many/lNNN share the
    rest evenly -- an account with hundreds of folders, most of them small."""
    global FOLDERS, FOLDER_NAMES
    base = [f for f in FOLDERS if not f[0].startswith("Lists/many/")]
    extra = max(0, total - len(base))
    if extra:
        base = [(name, share * 0.6, kind) for name, share, kind in base]
        base += [("Lists/many/l%03d" % i, 0.4 / extra, "list:many") for i in range(extra)]
    FOLDERS = base
    FOLDER_NAMES = [f[0] for f in FOLDERS]

ME = ("Bench User", "bench@example.org")
DATE_START = _dt.datetime(2019, 1, 1, tzinfo=_dt.timezone.utc).timestamp()
DATE_END = _dt.datetime(2024, 12, 31, 23, 59, tzinfo=_dt.timezone.utc).timestamp()


# ---------------------------------------------------------------------------
# modified UTF-7 (RFC 3501 5.1.3)
def mutf7_encode(s: str) -> str:
    out, buf = [], []

    def flush():
        if buf:
            b = "".join(buf).encode("utf-16-be")
            out.append("&" + base64.b64encode(b).decode().rstrip("=").replace("/", ",") + "-")
            buf.clear()

    for ch in s:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            buf.append(ch)
    flush()
    return "".join(out)


def mutf7_decode(s: str) -> str:
    out, i = [], 0
    while i < len(s):
        ch = s[i]
        if ch != "&":
            out.append(ch)
            i += 1
            continue
        j = s.find("-", i)
        if j < 0:
            raise ValueError("bad mUTF-7: " + s)
        if j == i + 1:
            out.append("&")
        else:
            b64 = s[i + 1:j].replace(",", "/")
            b64 += "=" * (-len(b64) % 4)
            out.append(base64.b64decode(b64).decode("utf-16-be"))
        i = j + 1
    return "".join(out)


def maildirpp_dirname(imap_name: str) -> str:
    """IMAP name ("/" separator) -> Maildir++ directory name under the root."""
    if imap_name == "INBOX":
        return ""
    return "." + mutf7_encode(imap_name).replace("/", ".")


IMAP2LETTER = {"\\Draft": "D", "\\Flagged": "F", "\\Answered": "R", "\\Seen": "S", "\\Deleted": "T"}
LETTER2IMAP = {v: k for k, v in IMAP2LETTER.items()}


def letters(flags) -> str:
    return "".join(sorted(IMAP2LETTER[f] for f in flags if f in IMAP2LETTER))


# ---------------------------------------------------------------------------
FIRST = ["Anna", "Ben", "Carla", "David", "Elif", "Frank", "Greta", "Hiro", "Ines", "Jonas",
         "Katrin", "Lars", "Mira", "Nikolai", "Olga", "Pedro", "Quentin", "Rosa", "Sven",
         "Tanja", "Uwe", "Vera", "Wei", "Xavier", "Yusuf", "Zoë", "Jürgen", "Åsa", "Chloé", "Søren"]
LAST = ["Müller", "Schmidt", "Nguyen", "Smith", "García", "Rossi", "Kowalski", "Dubois",
        "Jensen", "Tanaka", "Öztürk", "Novák", "Silva", "Brown", "Weber", "Ivanova", "Lee",
        "O'Brien", "Fischer", "Haraldsen"]
DOMAINS = ["example.com", "example.net", "mail.example.de", "uni-example.edu", "corp.example",
           "lists.example.org", "example.co.uk", "posteo.example", "fastmail.example"]
WORDS = ("the of and to in is that for it as was with be by on not he this are or his from at "
         "which but have an they you were her she there been one all we their has would when "
         "if so what out up more into do can about than no other some could them time only new "
         "these two may then first any like now my such make over our even most me state after "
         "also made many did must before back see through way where get much go well your know "
         "should down work year because come people just say each those take day good how long "
         "release build crate compiler borrow checker trait lifetime async runtime tokio serde "
         "package upload maintainer bug report patch review merge branch commit test failure "
         "server client mailbox folder message flag sync index cache latency throughput "
         "Termin Besprechung morgen Rechnung Angebot Grüße Entwurf Übersicht bitte danke "
         "größer schöne Woche Änderung Straße").split()
SUBJECTS = ["Meeting notes {n}", "Quarterly report", "Lunch on {day}?", "Invoice #{n}",
            "Re: your question about {w}", "Build failure in {w}", "[PATCH v{v}] fix {w} handling",
            "Weekly update", "Photos from the trip", "Reminder: {w} deadline",
            "Termin am {day}", "Rechnung Nr. {n}", "Grüße aus {city}", "Änderung der {w}",
            "Question about {w} and {w2}", "Draft: {w} proposal", "Travel plans",
            "Your order {n} has shipped", "Security advisory for {w}", "Fwd: {w} document"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
CITIES = ["Berlin", "Zürich", "Köln", "Malmö", "Kraków", "Lisboa", "Wien", "Genève"]
LISTS = {
    "rust": ("rust-users.lists.example.org", "Rust users discussion", "[rust-users]"),
    "debian": ("debian-devel.lists.example.org", "Debian developers", "[debian-devel]"),
    "many": ("small.lists.example.org", "One of many small lists", "[small]"),
}
ATTACH_TYPES = [("application/pdf", "pdf"), ("image/jpeg", "jpg"), ("image/png", "png"),
                ("application/zip", "zip"),
                ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", "docx")]


def _enc_header(s: str, rng: random.Random) -> str:
    """RFC 2047-encode a header value if it is not ASCII."""
    try:
        s.encode("ascii")
        return s
    except UnicodeEncodeError:
        if rng.random() < 0.5:
            return "=?UTF-8?B?" + base64.b64encode(s.encode()).decode() + "?="
        q = "".join(c if (c.isascii() and c.isalnum()) else
                    ("_" if c == " " else "".join("=%02X" % b for b in c.encode())) for c in s)
        return "=?UTF-8?Q?" + q + "?="


def _addr(name: str, addr: str, rng: random.Random) -> str:
    return email.utils.formataddr((name, addr)) if name.isascii() else \
        "%s <%s>" % (_enc_header(name, rng), addr)


class MailFactory:
    """Deterministic message builder. Every message is a pure function of
    (seed, key) so the corpus does not depend on generation order."""

    def __init__(self, seed: int = 42):
        self.seed = seed
        prng = random.Random("paragraphs:%d" % seed)
        self.paragraphs = []
        for _ in range(3000):
            nwords = prng.randint(15, 120)
            words = [prng.choice(WORDS) for _ in range(nwords)]
            words[0] = words[0].capitalize()
            text = " ".join(words) + "."
            # wrap at ~72 columns
            lines, cur = [], ""
            for w in text.split(" "):
                if len(cur) + len(w) + 1 > 72:
                    lines.append(cur)
                    cur = w
                else:
                    cur = (cur + " " + w) if cur else w
            lines.append(cur)
            self.paragraphs.append("\n".join(lines))
        self.people = []
        for i in range(400):
            fn, ln = prng.choice(FIRST), prng.choice(LAST)
            local = (fn + "." + ln).lower()
            local = local.encode("ascii", "ignore").decode().replace("'", "")
            self.people.append((fn + " " + ln, "%s@%s" % (local, prng.choice(DOMAINS))))

    # -- pieces ---------------------------------------------------------------
    def _text(self, rng: random.Random, target: int) -> str:
        parts, size = [], 0
        while size < target:
            p = self.paragraphs[rng.randrange(len(self.paragraphs))]
            parts.append(p)
            size += len(p) + 2
        return "\n\n".join(parts) + "\n"

    def _subject(self, rng: random.Random) -> str:
        t = rng.choice(SUBJECTS)
        return t.format(n=rng.randint(1000, 99999), day=rng.choice(DAYS), w=rng.choice(WORDS),
                        w2=rng.choice(WORDS), v=rng.randint(2, 5), city=rng.choice(CITIES))

    def message(self, key: str, folder: str, kind: str, ts: float,
                thread_parent: str | None = None, size_scale: float = 1.0) -> tuple[bytes, str]:
        """Return (RFC 5322 bytes with LF line endings, Message-ID)."""
        rng = random.Random("msg:%d:%s" % (self.seed, key))
        msgid = "<%s.%s@%s>" % (hashlib.sha1(("%d:%s" % (self.seed, key)).encode()).hexdigest()[:16],
                                int(ts), rng.choice(DOMAINS))
        tzoff = rng.choice([0, 0, 60, 60, 120, -300, -240, -420, 330, 540])
        date = email.utils.format_datetime(_dt.datetime.fromtimestamp(
            ts, _dt.timezone(_dt.timedelta(minutes=tzoff))))
        other = self.people[rng.randrange(len(self.people))]
        if kind == "sent" or kind == "drafts":
            frm, to = ME, other
        else:
            frm, to = other, ME
        subject = self._subject(rng)
        if thread_parent and not subject.startswith("Re:"):
            subject = "Re: " + subject
        hdr = []
        if kind not in ("sent", "drafts"):
            hdr.append("Return-Path: <%s>" % frm[1])
            hops = rng.randint(1, 3)
            t = ts
            for h in range(hops):
                t -= rng.randint(1, 40)
                hdr.append("Received: from mx%d.%s (mx%d.%s [192.0.2.%d])\n\tby mail.example.org "
                           "(Postfix) with ESMTPS id %X\n\tfor <%s>; %s" % (
                               h + 1, frm[1].split("@")[1], h + 1, frm[1].split("@")[1],
                               rng.randint(1, 254), rng.getrandbits(40), ME[1],
                               email.utils.formatdate(t)))
        hdr.append("Date: " + date)
        hdr.append("From: " + _addr(frm[0], frm[1], rng))
        if kind.startswith("list:"):
            lid, ldesc, ltag = LISTS[kind.split(":", 1)[1]]
            hdr.append("To: %s <%s>" % (ldesc, lid.replace(".lists.", "@lists.", 1)))
            subject = ltag + " " + subject
        else:
            hdr.append("To: " + _addr(to[0], to[1], rng))
        if rng.random() < 0.2:
            ccs = [self.people[rng.randrange(len(self.people))] for _ in range(rng.randint(1, 4))]
            hdr.append("Cc: " + ",\n\t".join(_addr(n, a, rng) for n, a in ccs))
        hdr.append("Subject: " + _enc_header(subject, rng))
        hdr.append("Message-ID: " + msgid)
        if thread_parent:
            hdr.append("In-Reply-To: " + thread_parent)
            hdr.append("References: " + thread_parent)
        if kind.startswith("list:"):
            lid, ldesc, _ = LISTS[kind.split(":", 1)[1]]
            hdr.append("List-Id: %s <%s>" % (ldesc, lid))
            hdr.append("List-Unsubscribe: <mailto:%s?subject=unsubscribe>" % lid.replace(".lists.", "-request@lists.", 1))
            hdr.append("Precedence: list")
        hdr.append("User-Agent: " + rng.choice(["Mutt/2.2.9 (2022-11-12)", "Thunderbird/115.6.0",
                                                "Evolution 3.46.4", "aerc 0.15.2",
                                                "Apple Mail (2.3731)", "Roundcube Webmail/1.6.5"]))
        hdr.append("MIME-Version: 1.0")

        # body
        target = int(min(200_000, max(200.0, rng.lognormvariate(math.log(2800), 0.85))) * size_scale)
        text = self._text(rng, target)
        r = rng.random()
        att = None
        if r < 0.005:
            att = int(math.exp(rng.uniform(math.log(200_000), math.log(2_000_000))))
        elif r < 0.025:
            att = rng.randint(50_000, 200_000)
        elif r < 0.075:
            att = rng.randint(5_000, 50_000)
        if att is not None:
            att = max(1, int(att * size_scale))
            boundary = "=_bench_%016x" % rng.getrandbits(64)
            ctype, ext = rng.choice(ATTACH_TYPES)
            data = base64.encodebytes(rng.randbytes(att)).decode()
            hdr.append('Content-Type: multipart/mixed; boundary="%s"' % boundary)
            body = ("This is a multi-part message in MIME format.\n\n--%s\n"
                    "Content-Type: text/plain; charset=UTF-8\nContent-Transfer-Encoding: 8bit\n\n%s\n"
                    "--%s\nContent-Type: %s; name=\"file%d.%s\"\n"
                    "Content-Disposition: attachment; filename=\"file%d.%s\"\n"
                    "Content-Transfer-Encoding: base64\n\n%s\n--%s--\n") % (
                boundary, text, boundary, ctype, att, ext, att, ext, data, boundary)
        elif rng.random() < 0.2:
            boundary = "=_alt_%016x" % rng.getrandbits(64)
            html = "<html><body>" + "".join("<p>%s</p>\n" % p.replace("\n", " ")
                                            for p in text.split("\n\n")) + "</body></html>\n"
            hdr.append('Content-Type: multipart/alternative; boundary="%s"' % boundary)
            body = ("--%s\nContent-Type: text/plain; charset=UTF-8\nContent-Transfer-Encoding: 8bit\n\n%s\n"
                    "--%s\nContent-Type: text/html; charset=UTF-8\nContent-Transfer-Encoding: 8bit\n\n%s\n"
                    "--%s--\n") % (boundary, text, boundary, html, boundary)
        else:
            hdr.append("Content-Type: text/plain; charset=UTF-8; format=flowed")
            hdr.append("Content-Transfer-Encoding: 8bit")
            body = text
        return ("\n".join(hdr) + "\n\n" + body).encode("utf-8"), msgid

    def flags(self, key: str, kind: str, age_frac: float) -> set[str]:
        """age_frac: 0 = oldest .. 1 = newest message of its folder."""
        rng = random.Random("flags:%d:%s" % (self.seed, key))
        f = set()
        if kind == "drafts":
            return {"\\Draft", "\\Seen"}
        if kind == "sent":
            f.add("\\Seen")
        else:
            # newer mail is more likely to be unread; overall ~80% \Seen
            p_seen = 0.90 if age_frac < 0.7 else 0.57
            if rng.random() < p_seen:
                f.add("\\Seen")
            if rng.random() < 0.10 * (1.4 if kind == "inbox" else 0.3) / 0.96:
                f.add("\\Answered")
        if rng.random() < 0.03:
            f.add("\\Flagged")
        return f


# ---------------------------------------------------------------------------
def folder_counts(n: int) -> list[int]:
    counts = [int(n * w) for _, w, _ in FOLDERS]
    counts[0] += n - sum(counts)
    return counts


def plan(n: int, seed: int):
    """Yield (folder_index, i_in_folder, n_in_folder, key, ts, parent_key)."""
    for fi, (name, _, kind) in enumerate(FOLDERS):
        cnt = folder_counts(n)[fi]
        rng = random.Random("dates:%d:%s:%d" % (seed, name, n))
        stamps = sorted(rng.uniform(DATE_START, DATE_END) for _ in range(cnt))
        for i, ts in enumerate(stamps):
            parent = None
            if i > 0 and rng.random() < 0.3:
                parent = "%s#%d" % (name, rng.randrange(max(0, i - 50), i))
            yield fi, i, cnt, "%s#%d" % (name, i), ts, parent


def maildir_filename(ts: float, seq: int, body: bytes, flag_letters: str, host="benchgen") -> str:
    usec = int((ts % 1) * 1e6)
    size = len(body)
    vsize = size + body.count(b"\n")  # CRLF size as IMAP sees it
    return "%d.M%dP4242Q%d.%s,S=%d,W=%d:2,%s" % (int(ts), usec, seq, host, size, vsize, flag_letters)


def write_corpus(root: str, n: int, seed: int, verbose=True) -> dict:
    fac = MailFactory(seed)
    msgids = {}
    stats = {"messages": 0, "bytes": 0, "folders": {}}
    for name in FOLDER_NAMES:
        d = os.path.join(root, maildirpp_dirname(name))
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        if name != "INBOX":
            open(os.path.join(d, "maildirfolder"), "a").close()
    t0 = time.time()
    seq = 0
    for fi, i, cnt, key, ts, parent in plan(n, seed):
        name, _, kind = FOLDERS[fi]
        parent_id = msgids.get(parent) if parent else None
        body, msgid = fac.message(key, name, kind, ts, parent_id)
        msgids[key] = msgid
        fl = letters(fac.flags(key, kind, i / max(1, cnt - 1)))
        seq += 1
        fn = maildir_filename(ts, seq, body, fl)
        path = os.path.join(root, maildirpp_dirname(name), "cur", fn)
        with open(path, "wb") as fh:
            fh.write(body)
        os.utime(path, (ts, ts))
        stats["messages"] += 1
        stats["bytes"] += len(body)
        stats["folders"][name] = stats["folders"].get(name, 0) + 1
        if verbose and seq % 10000 == 0:
            print("  %d messages, %.0f MB, %.1f s" % (seq, stats["bytes"] / 1e6, time.time() - t0),
                  file=sys.stderr)
    # keep msgids in memory only; drop
    return stats


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--dovecot-dir", help="directory of a dovecot-up.sh instance")
    g.add_argument("--maildir", help="Maildir++ root to write into")
    ap.add_argument("--count", "-n", type=int, required=True)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--user", default=os.environ.get("BENCH_USER", "bench"))
    ap.add_argument("--owner", default=os.environ.get("BENCH_MAIL_OS_USER", "idlewild-bench"),
                    help="OS user to chown the Maildir to (with --dovecot-dir)")
    ap.add_argument("--no-doveadm", action="store_true", help="do not index with doveadm")
    ap.add_argument("--folders", type=int, default=len(FOLDERS),
                    help="spread the messages over this many folders (default 7; see use_folders)")
    a = ap.parse_args()
    use_folders(a.folders)

    if a.dovecot_dir:
        root = os.path.join(os.path.abspath(a.dovecot_dir), "home", a.user, "Maildir")
        conf = os.path.join(os.path.abspath(a.dovecot_dir), "dovecot.conf")
    else:
        root, conf = os.path.abspath(a.maildir), None
    os.makedirs(root, exist_ok=True)
    existing = sum(len(os.listdir(os.path.join(dp, "cur"))) for dp, dn, fn in os.walk(root)
                   if os.path.basename(dp) != "cur" and "cur" in dn)
    if existing:
        sys.exit("refusing: %s already holds %d messages" % (root, existing))

    t0 = time.time()
    st = write_corpus(root, a.count, a.seed)
    t1 = time.time()
    print("wrote %d messages (%.1f MB) in %.1f s: %s" % (
        st["messages"], st["bytes"] / 1e6, t1 - t0,
        ", ".join("%s=%d" % kv for kv in st["folders"].items())), file=sys.stderr)

    if conf and not a.no_doveadm:
        subprocess.run(["chown", "-R", "%s:%s" % (a.owner, a.owner), os.path.dirname(root)], check=True)
        da = ["doveadm", "-c", conf]
        subprocess.run(da + ["force-resync", "-u", a.user, "*"], check=True)
        subprocess.run(da + ["mailbox", "subscribe", "-u", a.user] + FOLDER_NAMES, check=True)
        out = subprocess.run(da + ["-f", "tab", "mailbox", "status", "-u", a.user, "messages", "*"],
                             check=True, capture_output=True, text=True).stdout
        total = sum(int(x) for x in out.split()[1:] if x.isdigit())
        print("doveadm indexed %d messages in %.1f s" % (total, time.time() - t1), file=sys.stderr)
        if total != a.count:
            sys.exit("doveadm sees %d messages, expected %d" % (total, a.count))


if __name__ == "__main__":
    main()
