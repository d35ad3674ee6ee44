#!/usr/bin/env python3
"""sync-latency.py -- what making one new message durable costs, by syncfs(2) and by
fdatasync(2), on an idle filesystem and while a dd writer copies a large file beside it.

    sync-latency.py [--dir /var/tmp/sync-latency] [--samples 300]

For each mode, SAMPLES times: write a 15 KB file into DIR, time the durability call (a
syncfs of DIR's filesystem, or an fdatasync of the file), unlink it, pause 10 ms. Then the
same with `dd if=/dev/zero bs=1M count=2048` writing into DIR over and over (started in a
process group of its own and stopped by it). Prints p50/p90/p99/mean/max per mode and
condition. DIR must be on the filesystem to study (not tmpfs: there both calls are free).
This is what the daemon pays per pushed message before the file gets its name in new/ or
cur/ (see src/store/maildir/mod.rs, SYNC_EACH_UP_TO, and ARCHITECTURE.md).
"""
import argparse
import ctypes
import os
import signal
import statistics
import subprocess
import time

LIBC = ctypes.CDLL("libc.so.6", use_errno=True)
BODY = os.urandom(15000)


def one(directory, mode, i):
    path = os.path.join(directory, "m%d" % i)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, BODY)
    os.close(fd)
    start = time.perf_counter()
    if mode == "syncfs":
        fd = os.open(directory, os.O_RDONLY)
        if LIBC.syncfs(fd) != 0:
            raise OSError(ctypes.get_errno(), "syncfs")
        os.close(fd)
    else:
        fd = os.open(path, os.O_RDONLY)
        os.fdatasync(fd)
        os.close(fd)
    elapsed = time.perf_counter() - start
    os.unlink(path)
    time.sleep(0.01)
    return elapsed * 1000


def run(directory, samples, label):
    for mode in ("syncfs", "fdatasync"):
        xs = sorted(one(directory, mode, i) for i in range(samples))
        print("%-5s %-9s p50 %8.2f ms  p90 %8.2f ms  p99 %8.2f ms  mean %8.2f ms  max %8.2f ms" % (
            label, mode, statistics.median(xs), xs[int(len(xs) * 0.9)],
            xs[min(len(xs) - 1, int(len(xs) * 0.99))], statistics.mean(xs), xs[-1]), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", default="/var/tmp/sync-latency")
    ap.add_argument("--samples", type=int, default=300)
    args = ap.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    big = os.path.join(args.dir, "busy.dd")
    run(args.dir, args.samples, "idle")
    writer = subprocess.Popen(
        ["bash", "-c", 'while :; do dd if=/dev/zero of="$1" bs=1M count=2048 status=none; rm -f "$1"; done',
         "busy", big], start_new_session=True)
    try:
        time.sleep(2)  # let the writer's dirty pages pile up
        run(args.dir, args.samples, "busy")
    finally:
        os.killpg(writer.pid, signal.SIGTERM)
        writer.wait()
        time.sleep(0.5)
        if os.path.exists(big):
            os.unlink(big)
        os.rmdir(args.dir) if not os.listdir(args.dir) else None


if __name__ == "__main__":
    main()
