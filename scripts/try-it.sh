#!/usr/bin/env bash
# Try idlewild: build it, start a throwaway Dovecot on 127.0.0.1 filled with sample mail, sync it
# into a local Maildir, change a flag locally and sync again, and show the result. Everything
# lives in one temporary directory that is removed at the end (KEEP=1 keeps it).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export PATH="$HOME/.cargo/bin:$PATH"

need=()
command -v dovecot >/dev/null 2>&1 && [ -x /usr/lib/dovecot/imap ] || need+=(dovecot-imapd)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v python3 >/dev/null 2>&1 || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "try-it needs: ${need[*]} (run as root, or: sudo apt-get install ${need[*]})" >&2
        exit 2
    fi
    echo "==> installing ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi

echo "==> building idlewild (release)"
cargo build --release --quiet
BIN=$ROOT/target/release/idlewild

WORK=$(mktemp -d /tmp/idlewild-try.XXXXXX)
chmod 755 "$WORK"
cleanup() {
    if [ -s "$WORK/dovecot/run/master.pid" ]; then
        kill "$(cat "$WORK/dovecot/run/master.pid")" 2>/dev/null || true
        sleep 0.5
    fi
    if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# --- a private Dovecot -----------------------------------------------------------------------
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
D=$WORK/dovecot
mkdir -p "$D"/{run,state,log,home/demo/Maildir}
if [ "$(id -u)" -eq 0 ]; then
    # Dovecot will not deliver mail as root: use an unprivileged system user for the mail.
    id -u idlewild-test >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin idlewild-test
    MAIL_USER=idlewild-test
    LOGIN_USER=dovenull; INTERNAL_USER=dovecot
else
    MAIL_USER=$(id -un); LOGIN_USER=$MAIL_USER; INTERNAL_USER=$MAIL_USER
fi
printf 'demo:{PLAIN}demo-password:%s:%s::%s::\n' "$(id -u $MAIL_USER)" "$(id -g $MAIL_USER)" "$D/home/demo" > "$D/users"
cat > "$D/dovecot.conf" <<CONF
instance_name = idlewild-try-$PORT
base_dir = $D/run
state_dir = $D/state
log_path = $D/log/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = $INTERNAL_USER
default_login_user = $LOGIN_USER
first_valid_uid = 1
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $D/users
}
userdb {
  driver = passwd-file
  args = username_format=%u $D/users
}
mail_location = maildir:~/Maildir
namespace inbox {
  inbox = yes
  separator = /
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $PORT
  }
  inet_listener imaps {
    port = 0
  }
}
service pop3-login {
  inet_listener pop3 {
    port = 0
  }
  inet_listener pop3s {
    port = 0
  }
}
service submission-login {
  inet_listener submission {
    port = 0
  }
}
CONF
chown -R "$MAIL_USER" "$D/home"
echo "==> starting a throwaway Dovecot on 127.0.0.1:$PORT"
dovecot -c "$D/dovecot.conf"
for _ in $(seq 100); do
    python3 - "$PORT" <<'PY' && break
import socket, sys
try:
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1)
    sys.exit(0 if s.recv(100).startswith(b"* OK") else 1)
except OSError:
    sys.exit(1)
PY
    sleep 0.1
done

# --- sample mail -----------------------------------------------------------------------------
echo "==> filling it with sample mail"
python3 - > "$WORK/ops.json" <<'PY'
import json, random
random.seed(7)
folders = ["INBOX", "Archive/2019", "Entwürfe", "Lists/rust"]
words = "mail sync idle flag server local folder notmuch mutt offline".split()
ops = [{"op": "create", "folder": f} for f in folders[1:]]
for i in range(60):
    folder = folders[i % len(folders)]
    body = "\r\n".join(" ".join(random.choice(words) for _ in range(12)) for _ in range(random.randint(3, 40)))
    msg = (f"From: Sender {i} <sender{i}@example.org>\r\nTo: demo@example.org\r\n"
           f"Subject: sample message {i}\r\nMessage-ID: <sample-{i}@example.org>\r\n"
           f"Date: Mon, 2 Nov 2026 10:{i % 60:02d}:00 +0000\r\n\r\n{body}\r\n")
    flags = ["\\Seen"] if i % 3 else []
    if i % 7 == 0:
        flags.append("\\Flagged")
    ops.append({"op": "append", "folder": folder, "message": msg, "flags": flags})
print(json.dumps(ops))
PY
IMAPCTL=(python3 "$ROOT/tests/support/imapctl.py" --host 127.0.0.1 --port "$PORT" --user demo --password demo-password)
"${IMAPCTL[@]}" < "$WORK/ops.json" >/dev/null

# --- idlewild --------------------------------------------------------------------------------
mkdir -p "$WORK/config"
cat > "$WORK/config/config.toml" <<CONF
[general]
state_dir = "$WORK/state"

[accounts.demo.remote]
type = "imap"
host = "127.0.0.1"
port = $PORT
tls = "none"          # only allowed because the server is on loopback
user = "demo"
password = "demo-password"

[accounts.demo.local]
type = "maildir"
path = "$WORK/Mail/demo"
CONF
chmod 600 "$WORK/config/config.toml"
export IDLEWILD_CONFIG=$WORK/config/config.toml

echo "==> idlewild check-config"
"$BIN" check-config
echo "==> idlewild sync"
"$BIN" sync
echo "==> the local Maildir"
(cd "$WORK/Mail/demo" && find . -path '*/cur/*' -o -path '*/new/*' | sed 's|/[^/]*$||' | sort | uniq -c)

echo "==> mark one message flagged locally, as a mail client would, and sync again"
f=$(find "$WORK/Mail/demo/INBOX/new" "$WORK/Mail/demo/INBOX/cur" -type f | sort | head -n 1)
base=$(basename "$f"); unique=${base%%:*}
mv "$f" "$WORK/Mail/demo/INBOX/cur/$unique:2,FS"
"$BIN" sync
echo "==> the server now reports (independent client):"
printf '[{"op":"dump","folder":"INBOX"}]' | "${IMAPCTL[@]}" \
    | python3 -c 'import json,sys; d=json.load(sys.stdin)["results"][0]; n=sum(1 for m in d if "\\Flagged" in m["flags"]); print("  INBOX:", len(d), "messages,", n, "flagged")'
echo "==> a sync with nothing to do"
"$BIN" sync
echo "done: idlewild synced $(find "$WORK/Mail/demo" -type f -path '*/cur/*' -o -type f -path '*/new/*' | wc -l) messages both ways."
