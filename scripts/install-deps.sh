#!/usr/bin/env bash
# Installs the Debian packages the tests start (private Dovecot, D-Bus, Secret Service, unit
# checks) when any is missing. Needs root for that; does nothing when all are there.
set -euo pipefail

# dovecot-imapd: private IMAP servers in the integration tests; dbus, gnome-keyring,
# libsecret-tools, libglib2.0-bin: private buses and Secret Service; systemd: unit file checks;
# neomutt: reads the mailbox list of hostile folder names.
# notmuch: indexes a synced Maildir for the keywords-to-tags recipe.
packages=(dovecot-imapd openssl python3 dbus gnome-keyring libsecret-tools libglib2.0-bin systemd neomutt notmuch)

missing=()
for pkg in "${packages[@]}"; do
    if [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" != "install ok installed" ]; then
        missing+=("$pkg")
    fi
done
if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi

echo "==> installing ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
    echo "error: the tests need these packages and this is not root: sudo apt-get install ${missing[*]}" >&2
    exit 1
fi
# Keep package scripts from starting the system Dovecot: the tests run their own instances and
# a stray daemon would only waste resources.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q -o Acquire::Retries=3
apt-get install -y -q -o Acquire::Retries=3 --no-install-recommends "${packages[@]}"
