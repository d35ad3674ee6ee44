#!/usr/bin/env python3
"""Push-latency benchmark of `idlewild daemon` against a private Dovecot on loopback.

    bench/push-latency.py [--messages 200] [--bin target/release/idlewild] [--work DIR]
    bench/push-latency.py --corpus 200000 --folders 500 [--template DIR] [--messages 100]

Measures, one message at a time (the next APPEND only after the previous one arrived):
  * end to end: server APPEND completed -> the message's file in the local Maildir (cur/ or new/);
  * Dovecot's share: APPEND completed -> EXISTS seen by an independent IDLE client on INBOX;
  * the daemon's share: that EXISTS -> the file in the Maildir;
  * local -> server: a new file delivered into the Maildir -> the message on the server
    (seen by the independent client);
and the daemon's resident memory while idling 20 folders on 5 accounts.

With --corpus N, one account instead holds a generated corpus of N messages over --folders
folders (gen-mail.py; --template DIR reuses a server home a previous run kept in DIR/home), all
watched; after the daemon's initial sync (timed) the pushes go to INBOX and to the small
folder Lists/many/l000 in turn, and the daemon's CPU per push (user + system, from /proc) is
reported besides the latencies.

Files are found by polling every 2 ms, so figures carry up to 2 ms of polling error.
Runs as root (Dovecot needs an unprivileged mail user, created on first use).
"""
import argparse, imaplib, json, os, re, shutil, signal, socket, statistics, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close()
    # dovecot-up uses PORT and PORT+1
    return p if p < 65000 else free_port()


def percentile(values, q):
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))]


def summary(name, values):
    return "%-34s n=%d  p50 %6.1f ms  p99 %6.1f ms  max %6.1f ms" % (
        name, len(values), percentile(values, 0.5), percentile(values, 0.99), max(values))


def names_in(maildir):
    names = set()
    for sub in ("new", "cur"):
        try:
            names.update(os.path.join(sub, f) for f in os.listdir(os.path.join(maildir, sub)))
        except OSError:
            pass
    return names


def find_new_file(maildir, before, needle):
    """Whether a file not among `before` holds `needle`. Only new names are opened: reading
    every file of a big folder each poll would cost the poller (and the daemon's inotify
    watch) more than the push being measured."""
    for name in names_in(maildir) - before:
        try:
            with open(os.path.join(maildir, name), "rb") as fh:
                if needle in fh.read(512):
                    return True
        except OSError:
            pass
    return False


def find_file(maildir, needle):
    for sub in ("new", "cur"):
        d = os.path.join(maildir, sub)
        try:
            names = os.listdir(d)
        except OSError:
            continue
        for f in names:
            try:
                with open(os.path.join(d, f), "rb") as fh:
                    if needle in fh.read(512):
                        return True
            except OSError:
                pass
    return False


class IdleClient:
    """An independent IMAP client idling on a folder, to timestamp the server's notifications."""

    def __init__(self, port, user, password, folder="INBOX"):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.f = self.sock.makefile("rb")
        self.f.readline()
        self.cmd(b"a LOGIN %s %s" % (user.encode(), password.encode()))
        self.cmd(b"b SELECT " + folder.encode())
        self.sock.sendall(b"c IDLE\r\n")
        while not self.f.readline().startswith(b"+"):
            pass

    def cmd(self, line):
        tag = line.split()[0]
        self.sock.sendall(line + b"\r\n")
        while True:
            r = self.f.readline()
            if r.startswith(tag + b" "):
                return r

    def wait_exists(self, timeout=10):
        self.sock.settimeout(timeout)
        while True:
            line = self.f.readline()
            if b"EXISTS" in line:
                return time.monotonic()


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid, key="VmRSS:"):
    with open("/proc/%d/status" % pid) as fh:
        for line in fh:
            if line.startswith(key):
                return int(line.split()[1]) / 1024
    return 0.0


def maildir_dir(root, folder):
    return os.path.join(root, *folder.split("/"))


def big_account(args, work, port, dovecot_dir):
    """One account with a generated corpus: initial sync, then pushes into a big and a small
    folder. Returns the result dictionary."""
    home = os.path.join(dovecot_dir, "home", "bench")
    if args.template and os.path.isdir(os.path.join(args.template, "home", "bench")):
        shutil.rmtree(home)
        # Message files hard-linked (Dovecot only renames and unlinks them), the rest copied.
        subprocess.run(["cp", "-al", os.path.join(args.template, "home", "bench"), home], check=True)
        for top, _, files in os.walk(home):
            if os.path.basename(top) in ("cur", "new"):
                continue
            for f in files:
                path = os.path.join(top, f)
                st = os.stat(path)
                shutil.copy2(path, path + ".copy")
                os.chown(path + ".copy", st.st_uid, st.st_gid)
                os.replace(path + ".copy", path)
    else:
        subprocess.run([sys.executable, os.path.join(HERE, "gen-mail.py"), "--dovecot-dir", dovecot_dir,
                        "--count", str(args.corpus), "--seed", "42", "--folders", str(args.folders)],
                       check=True, stdout=subprocess.DEVNULL)
        if args.template:
            os.makedirs(os.path.join(args.template, "home"), exist_ok=True)
            subprocess.run(["cp", "-a", home, os.path.join(args.template, "home", "bench")], check=True)
    conf = ('[general]\nstate_dir = "%s/state"\n'
            '[accounts.bench]\nidle = ["*"]\n'
            '[accounts.bench.remote]\ntype = "imap"\nhost = "127.0.0.1"\nport = %d\ntls = "none"\n'
            'user = "bench"\npassword = "bench"\n'
            '[accounts.bench.local]\ntype = "maildir"\npath = "%s/Mail"\n' % (work, port, work))
    config = os.path.join(work, "config.toml")
    with open(config, "w") as fh:
        fh.write(conf)
    os.chmod(config, 0o600)
    log_path = os.path.join(work, "daemon.log")
    log = open(log_path, "w")
    t0 = time.monotonic()
    daemon = subprocess.Popen([args.bin, "--config", config, "daemon", "--log", "stderr"],
                              stdout=subprocess.DEVNULL, stderr=log,
                              env=dict(os.environ, IDLEWILD_LOG=args.log_filter))
    try:
        # The server watch starts once the first full sync is done.
        while True:
            with open(log_path) as fh:
                text = fh.read()
            if "watching the folders with NOTIFY" in text or "watching folders with IDLE" in text:
                break
            if daemon.poll() is not None or time.monotonic() - t0 > 900:
                sys.exit("the daemon's first sync did not finish; see %s" % log_path)
            time.sleep(0.05)
        initial_s = time.monotonic() - t0
        time.sleep(2)
        idle_rss = rss_mb(daemon.pid)
        result = {"corpus": args.corpus, "folders": args.folders, "initial_sync_s": round(initial_s, 2),
                  "initial_peak_rss_mb": round(rss_mb(daemon.pid, "VmHWM:"), 1),
                  "idle_rss_mb": round(idle_rss, 1)}
        root = os.path.join(work, "Mail")
        appender = imaplib.IMAP4("127.0.0.1", port); appender.login("bench", "bench")
        targets = ["INBOX", "Lists/many/l000" if args.folders > 7 else "Lists/rust"]
        for folder in targets:
            idle = IdleClient(port, "bench", "bench", folder)
            local = maildir_dir(root, folder)
            e2e, daemon_share = [], []
            log_from = os.path.getsize(log_path)
            cpu0 = cpu_seconds(daemon.pid)
            for i in range(args.messages):
                mid = b"<push-%s-%d-%d@bench>" % (folder.replace("/", ".").encode(), i, os.getpid())
                msg = b"From: a@b\r\nTo: c@d\r\nSubject: push %d\r\nMessage-ID: %s\r\n\r\nhello\r\n" % (i, mid)
                before = names_in(local)
                appender.append(folder, None, None, msg)
                t_append = time.monotonic()
                t_exists = idle.wait_exists()
                while not find_new_file(local, before, mid):
                    if time.monotonic() - t_append > 20:
                        sys.exit("message %d did not arrive in %s within 20 s; see %s" % (i, folder, log_path))
                    time.sleep(0.002)
                t_file = time.monotonic()
                e2e.append((t_file - t_append) * 1000)
                daemon_share.append((t_file - t_exists) * 1000)
                time.sleep(0.05)
            cpu = cpu_seconds(daemon.pid) - cpu0
            # The daemon's own time per sync, from its log: the sync that brought the message
            # down, and the one its own delivery woke through inotify (finding nothing to do).
            with open(log_path) as fh:
                fh.seek(log_from)
                syncs = [(int(m.group(1)), int(m.group(2)), int(m.group(3))) for m in
                         re.finditer(r"synced folders=(\d+) new_here=(\d+) ms=(\d+)", fh.read())]
            down = [ms for n, new, ms in syncs if new > 0]
            idle = [ms for n, new, ms in syncs if new == 0]
            print(summary("%s: server -> Maildir" % folder, e2e))
            print(summary("%s: idlewild (EXISTS -> file)" % folder, daemon_share))
            print("%s: daemon CPU per push %.1f ms; %d syncs for %d pushes" % (
                folder, cpu * 1000 / args.messages, len(syncs), args.messages))
            if down:
                print(summary("%s: sync bringing it down" % folder, down))
            if idle:
                print(summary("%s: other syncs (own echo)" % folder, idle))
            result[folder] = {
                "end_to_end_ms": {"p50": percentile(e2e, 0.5), "p99": percentile(e2e, 0.99)},
                "daemon_share_ms": {"p50": percentile(daemon_share, 0.5), "p99": percentile(daemon_share, 0.99)},
                "daemon_cpu_ms_per_push": round(cpu * 1000 / args.messages, 2),
                "syncs": len(syncs),
                "sync_down_ms": {"p50": percentile(down, 0.5), "p99": percentile(down, 0.99)} if down else None,
                "sync_other_ms": {"p50": percentile(idle, 0.5), "p99": percentile(idle, 0.99)} if idle else None,
            }
        result["peak_rss_mb"] = round(rss_mb(daemon.pid, "VmHWM:"), 1)
        return result
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=25)
        except subprocess.TimeoutExpired:
            daemon.kill()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=200)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/idlewild"))
    ap.add_argument("--work", default=None)
    ap.add_argument("--corpus", type=int, default=0, help="one account with this many messages")
    ap.add_argument("--folders", type=int, default=7, help="folders of the --corpus account")
    ap.add_argument("--template", default=None, help="keep/reuse the generated server home here")
    ap.add_argument("--log-filter", default="idlewild=info", help="IDLEWILD_LOG of the daemon")
    args = ap.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="idlewild-push-")
    os.makedirs(work, exist_ok=True)
    os.chmod(work, 0o755)
    port = free_port()
    dovecot_dir = os.path.join(work, "dovecot")
    env = dict(os.environ, DOVECOT_COMPRESS="0")
    subprocess.run([os.path.join(HERE, "dovecot-up.sh"), dovecot_dir, str(port)], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    daemon = None
    try:
        if args.corpus:
            result = big_account(args, work, port, dovecot_dir)
            with open(os.path.join(work, "result.json"), "w") as fh:
                json.dump(result, fh, indent=1)
            print(json.dumps(result))
            return
        # Five accounts (users u0..u4), four folders each, all watched: 20 IDLE folders.
        users = ["bench"] + ["u%d" % i for i in range(1, 5)]
        with open(os.path.join(dovecot_dir, "users")) as fh:
            line = fh.readline().strip()
        fields = line.split(":")
        with open(os.path.join(dovecot_dir, "users"), "a") as fh:
            for u in users[1:]:
                home = os.path.join(dovecot_dir, "home", u)
                os.makedirs(os.path.join(home, "Maildir"), exist_ok=True)
                shutil.chown(home, int(fields[2]), int(fields[3]))
                shutil.chown(os.path.join(home, "Maildir"), int(fields[2]), int(fields[3]))
                fh.write("%s:{PLAIN}bench:%s:%s::%s::\n" % (u, fields[2], fields[3], home))
        time.sleep(1.1)  # passwd-file is re-read at most once a second
        folders = ["INBOX", "Archive", "Lists/rust", "Sent"]
        for u in users:
            c = imaplib.IMAP4("127.0.0.1", port); c.login(u, "bench")
            for f in folders[1:]:
                c.create(f)
            c.logout()
        conf = ['[general]\nstate_dir = "%s/state"\n' % work]
        for u in users:
            conf.append(
                '[accounts.%s]\nidle = ["*"]\nmax_connections = 6\n'
                '[accounts.%s.remote]\ntype = "imap"\nhost = "127.0.0.1"\nport = %d\ntls = "none"\n'
                'user = "%s"\npassword = "bench"\n'
                '[accounts.%s.local]\ntype = "maildir"\npath = "%s/Mail/%s"\n'
                % (u, u, port, u, u, work, u))
        config = os.path.join(work, "config.toml")
        with open(config, "w") as fh:
            fh.write("\n".join(conf))
        os.chmod(config, 0o600)
        log = open(os.path.join(work, "daemon.log"), "w")
        daemon = subprocess.Popen([args.bin, "--config", config, "daemon", "--log", "stderr"],
                                  stdout=subprocess.DEVNULL, stderr=log,
                                  env=dict(os.environ, IDLEWILD_LOG="idlewild=info"))
        inbox = os.path.join(work, "Mail/bench/INBOX")
        deadline = time.monotonic() + 30
        while not os.path.isdir(os.path.join(inbox, "cur")):
            if time.monotonic() > deadline:
                sys.exit("the daemon did not create the Maildir; see %s/daemon.log" % work)
            time.sleep(0.05)
        time.sleep(2)  # let every account finish its first sync and start IDLE

        rss_kb = 0
        with open("/proc/%d/status" % daemon.pid) as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    rss_kb = int(line.split()[1])

        idle = IdleClient(port, "bench", "bench")
        appender = imaplib.IMAP4("127.0.0.1", port); appender.login("bench", "bench")
        e2e, dovecot_share, daemon_share = [], [], []
        for i in range(args.messages):
            mid = b"<push-%d-%d@bench>" % (i, os.getpid())
            msg = b"From: a@b\r\nTo: c@d\r\nSubject: push %d\r\nMessage-ID: %s\r\n\r\nhello\r\n" % (i, mid)
            t0 = time.monotonic()
            appender.append("INBOX", None, None, msg)
            t_append = time.monotonic()
            t_exists = idle.wait_exists()
            while not find_file(inbox, mid):
                if time.monotonic() - t0 > 10:
                    sys.exit("message %d did not arrive within 10 s" % i)
                time.sleep(0.002)
            t_file = time.monotonic()
            e2e.append((t_file - t_append) * 1000)
            dovecot_share.append((t_exists - t_append) * 1000)
            daemon_share.append((t_file - t_exists) * 1000)
            time.sleep(0.05)

        # Local -> server: deliver into the Maildir like an MDA / mail client, wait for the server.
        up = []
        poller = imaplib.IMAP4("127.0.0.1", port); poller.login("bench", "bench")
        count = int(poller.select("INBOX", readonly=True)[1][0])
        for i in range(min(50, args.messages)):
            mid = b"<up-%d-%d@bench>" % (i, os.getpid())
            name = "%d.up%d.bench" % (time.time(), i)
            tmp = os.path.join(inbox, "tmp", name)
            with open(tmp, "wb") as fh:
                fh.write(b"From: a@b\nMessage-ID: %s\nSubject: up %d\n\nhello\n" % (mid, i))
            t0 = time.monotonic()
            os.rename(tmp, os.path.join(inbox, "new", name))
            # NOOP answers with EXISTS at once (IDLE clients are told only after Dovecot's
            # own ~0.5 s delay, which is not ours to measure here).
            while True:
                typ, data = poller.noop()
                if int(poller.select("INBOX", readonly=True)[1][0]) > count:
                    count += 1
                    break
                if time.monotonic() - t0 > 10:
                    sys.exit("local message %d did not reach the server within 10 s" % i)
                time.sleep(0.002)
            up.append((time.monotonic() - t0) * 1000)
            time.sleep(0.05)

        result = {
            "messages": args.messages,
            "end_to_end_ms": {"p50": percentile(e2e, 0.5), "p99": percentile(e2e, 0.99)},
            "dovecot_notify_ms": {"p50": percentile(dovecot_share, 0.5), "p99": percentile(dovecot_share, 0.99)},
            "daemon_share_ms": {"p50": percentile(daemon_share, 0.5), "p99": percentile(daemon_share, 0.99)},
            "local_to_server_ms": {"p50": percentile(up, 0.5), "p99": percentile(up, 0.99)},
            "idle_rss_mb_5_accounts_20_folders": round(rss_kb / 1024, 1),
        }
        print(summary("server -> Maildir (end to end)", e2e))
        print(summary("  of which Dovecot's notification", dovecot_share))
        print(summary("  of which idlewild (EXISTS -> file)", daemon_share))
        print(summary("Maildir -> server", up))
        print("idle RSS, 5 accounts x 4 folders watched: %.1f MB" % (rss_kb / 1024))
        with open(os.path.join(work, "result.json"), "w") as fh:
            json.dump(result, fh, indent=1)
        print(json.dumps(result))
    finally:
        if daemon is not None:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(timeout=25)
            except subprocess.TimeoutExpired:
                daemon.kill()
        subprocess.run([os.path.join(HERE, "dovecot-down.sh"), dovecot_dir], stdout=subprocess.DEVNULL)
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
