#!/usr/bin/env bash
# run-bench.sh -- IMAP<->Maildir sync benchmark: every tool against the same
# private Dovecot and the same generated corpus.
#
# For each tool (tools/NAME/) and size:
#   initial   fresh server copy + empty local Maildir, full sync
#   noop      re-sync with no changes
#   server1pct  mutate.py server (1% appends, 1% flag changes, 0.5% deletions) then sync
#   local1pct   mutate.py local  (same amounts on the local Maildir) then sync
# Every sync is timed by measure.py (wall, user+sys CPU of the whole process tree,
# peak RSS of its largest process, Dovecot CPU) and followed by verify.py.
# Then a LATENCY scenario: LATENCY_SIZE messages, initial + noop, through
# latency-proxy.py adding LATENCY_RTT_MS of round-trip delay.
#
# Knobs (environment):
#   TOOLS="idlewild mbsync offlineimap3"   SIZES="1000 10000 50000"   REPS=3
#   IDLEWILD_BIN=<repo>/target/release/idlewild (build it first: cargo build --release)
#   INITIAL_REPS_LARGE=1   initial-sync repetitions for sizes > LARGE (LARGE=10000)
#   MAXSIZE_<tool>=N       skip sizes above N for that tool (default from tool.env MAX_SIZE)
#   MUTATE_PCT=1  SEED=42  PORT=14300 (uses PORT, PORT+1, PORT+10)
#   FOLDERS=7: folders of the corpus; more adds small Lists/many/lNNN folders holding
#        40 % of the messages (gen-mail.py --folders); scenario names get "-fN"
#   LATENCY=1  LATENCY_SIZE=10000  LATENCY_RTT_MS=25  LATENCY_REPS=1 (initial)
#   LATENCY_TOOLS="$TOOLS"  LATENCY_CONTROL=0 (1: also run through the proxy with 0 ms)
#   WORK=/dev/shm/imapbench (tmpfs: fsync is ~free, numbers are CPU/protocol bound;
#        set WORK to a disk path to include the tools' fsync policy)
#   RESULTS=$WORK/results.jsonl   KEEP=0 (1: keep run dirs)   VERIFY_SAMPLE=0 (0 = all msgs)
#   CMD_TIMEOUT=1800 (seconds per measured command)
#   QUIET_WAIT=10 QUIET_CORES=0.3 QUIET_BUDGET=300: before each measured step wait
#        (at most QUIET_WAIT s, at most QUIET_BUDGET s in the whole run) until other
#        processes on the machine use < QUIET_CORES cores (shared machines)
#   COMPRESS=1: Dovecot offers COMPRESS=DEFLATE (mbsync and interimap then use it);
#        COMPRESS=0 does not offer it; scenario names get a "-nocompress" suffix
#   BENCH_NICE=-10: nice level of Dovecot, the measured tool and the proxy, so
#        that unrelated jobs on a shared machine disturb wall times less (0 = off)
#   SETTLE_S=1.1: pause between a mutation and the measured sync, so that no tool
#        sees files modified "this second" (mbsync sleeps 1 s in that case)
#   BUSY_WRITER=0: 1 = while each step is measured, a dd writes a large file on WORK's
#        filesystem over and over (a user copying a big file beside the mail): the cost
#        of each tool's way of making mail durable when the disk is busy; scenario
#        names get "-busy"
set -euo pipefail

BENCH=$(cd "$(dirname "$0")" && pwd)
WORK=${WORK:-/dev/shm/imapbench}
TOOLS=${TOOLS:-"idlewild mbsync offlineimap3"}
export IDLEWILD_BIN=${IDLEWILD_BIN:-$(cd "$BENCH/.." && pwd)/target/release/idlewild}
SIZES=${SIZES-"1000 10000 50000"}   # SIZES="" = latency scenario only
REPS=${REPS:-3}
LARGE=${LARGE:-10000}
INITIAL_REPS_LARGE=${INITIAL_REPS_LARGE:-1}
MUTATE_PCT=${MUTATE_PCT:-1}
SEED=${SEED:-42}
FOLDERS=${FOLDERS:-7}
if [ "$FOLDERS" = 7 ]; then FTAG=""; else FTAG="-f$FOLDERS"; fi
PORT=${PORT:-14300}
PROXY_PORT=$((PORT + 10))
LATENCY=${LATENCY:-1}
LATENCY_SIZE=${LATENCY_SIZE:-10000}
LATENCY_RTT_MS=${LATENCY_RTT_MS:-25}
LATENCY_REPS=${LATENCY_REPS:-1}
LATENCY_TOOLS=${LATENCY_TOOLS:-$TOOLS}
LATENCY_CONTROL=${LATENCY_CONTROL:-0}
RESULTS=${RESULTS:-$WORK/results.jsonl}
KEEP=${KEEP:-0}
VERIFY_SAMPLE=${VERIFY_SAMPLE:-0}
CMD_TIMEOUT=${CMD_TIMEOUT:-1800}
QUIET_WAIT=${QUIET_WAIT:-10}
QUIET_CORES=${QUIET_CORES:-0.3}
QUIET_BUDGET=${QUIET_BUDGET:-300}
QUIET_SPENT=0
SETTLE_S=${SETTLE_S:-1.1}
BENCH_NICE=${BENCH_NICE:--10}
BUSY_WRITER=${BUSY_WRITER:-0}
BUSY_PID=""
if [ "$BUSY_WRITER" = 1 ]; then FTAG="$FTAG-busy"; fi
COMPRESS=${COMPRESS:-1}
export DOVECOT_COMPRESS=$COMPRESS
if [ "$COMPRESS" = 1 ]; then SCTAG="$FTAG"; else SCTAG="$FTAG-nocompress"; fi
NICE=(nice -n "$BENCH_NICE")
BUSER=bench
BPASS=bench
MAILUSER=${BENCH_MAIL_OS_USER:-idlewild-bench}
export BENCH_MAIL_OS_USER=$MAILUSER

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}
case "${1:-}" in -h|--help) usage 0 ;; "") ;; *) echo "$0: takes no arguments, only environment knobs" >&2; usage 2 >&2 ;; esac

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "FATAL: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (dovecot needs it to drop privileges)"

# ------------------------------------------------------------------ packages
need=()
command -v dovecot >/dev/null || need+=(dovecot-imapd)
command -v mbsync >/dev/null || need+=(isync)
command -v offlineimap >/dev/null || need+=(offlineimap3)
case " $TOOLS " in *" interimap "*) command -v interimap >/dev/null || need+=(interimap) ;; esac
# never cyrus-imapd or courier-imap here: they conflict with dovecot-imapd
[ -x /usr/bin/time ] || need+=(time)
command -v setpriv >/dev/null || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -q "${need[@]}" >/dev/null || die "apt-get failed"
fi
case " $TOOLS ${LATENCY_TOOLS:-} " in
    *" idlewild "*) [ -x "$IDLEWILD_BIN" ] || die "no idlewild binary at $IDLEWILD_BIN (cargo build --release, or set IDLEWILD_BIN)" ;;
esac
id -u "$MAILUSER" >/dev/null 2>&1 || useradd --system --no-create-home --home-dir /nonexistent \
    --shell /usr/sbin/nologin "$MAILUSER"

mkdir -p "$WORK/logs"
START=$(date +%s)
RUNNING_DIRS=()
PROXY_PID=""
cleanup() {
    busy_stop
    if [ -n "$PROXY_PID" ]; then kill "$PROXY_PID" 2>/dev/null || true; fi
    for d in "${RUNNING_DIRS[@]}"; do "$BENCH/dovecot-down.sh" "$d" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------ versions
{
    echo "date: $(date -u +%FT%TZ)"
    echo "kernel: $(uname -r); cpus: $(nproc); mem: $(free -g | awk '/Mem:/{print $2}') GiB"
    echo "dovecot: $(dovecot --version) (deb $(dpkg-query -W -f='${Version}' dovecot-imapd 2>/dev/null))"
    for t in $TOOLS; do
        VERSION_CMD=""; source "$BENCH/tools/$t/tool.env"
        echo "$t: $(bash -c "$VERSION_CMD" 2>&1 | head -1)"
    done
    echo "idlewild checkout: $(git -C "$BENCH/.." describe --always --dirty 2>/dev/null || echo unknown)"
    for p in isync offlineimap3 interimap python3; do
        echo "deb $p: $(dpkg-query -W -f='${Version}' $p 2>/dev/null)"
    done
    echo "nice: $BENCH_NICE; COMPRESS=DEFLATE offered by server: $COMPRESS"
    echo "work dir: $WORK ($(df -T "$WORK" | awk 'NR==2{print $2}'))"
} > "$WORK/versions.txt"
cat "$WORK/versions.txt" >&2

# ------------------------------------------------------------------ helpers
server_up() {   # DIR
    "${NICE[@]}" "$BENCH/dovecot-up.sh" "$1" "$PORT" 2>>"$WORK/logs/dovecot-up.log" || die "dovecot-up $1 failed"
    RUNNING_DIRS+=("$1")
}
server_down() { "$BENCH/dovecot-down.sh" "$1"; }

make_template() {  # SIZE -> $WORK/tmpl-SIZE (-fFOLDERS)
    local size=$1 t="$WORK/tmpl-$1$FTAG"
    if [ -f "$t/.done" ] && [ "$(cat "$t/.done")" = "seed=$SEED" ]; then return; fi
    log "generating corpus: $size messages (seed $SEED)"
    rm -rf "$t"
    server_up "$t"
    python3 "$BENCH/gen-mail.py" --dovecot-dir "$t" --count "$size" --seed "$SEED" --folders "$FOLDERS" \
        2>&1 | tail -3 >&2 || die "gen-mail failed"
    server_down "$t"
    echo "seed=$SEED" > "$t/.done"
}

fresh_server() {  # RUNDIR SIZE : copy the template (message files hard-linked: Dovecot
                  # never rewrites a message file, only renames/unlinks; indexes copied)
    local run=$1 size=$2 t="$WORK/tmpl-$2$FTAG"
    [ -f "$run/dovecot.pid" ] && server_down "$run"
    rm -rf "$run"
    mkdir -p "$run"
    cp -al "$t/home" "$run/home"
    cp -a "$t/ssl" "$run/ssl"
    find "$run/home" -type f ! -path '*/cur/*' ! -path '*/new/*' -print0 |
        while IFS= read -r -d '' f; do cp -p "$f" "$f.copy" && mv -f "$f.copy" "$f"; done
    server_up "$run"
}

render() {  # TOOL RUNDIR PORT
    local tool=$1 run=$2 port=$3 f out
    mkdir -p "$run/state" "$run/local"
    RUN_AS="" ; CMD="" ; PREPARE="" ; MAX_SIZE=""
    source "$BENCH/tools/$tool/tool.env"
    local runas=${RUN_AS:-root}
    subst() {
        sed -e "s|@HOST@|127.0.0.1|g" -e "s|@PORT@|$port|g" -e "s|@TLSPORT@|$((PORT + 1))|g" \
            -e "s|@USER@|$BUSER|g" -e "s|@PASS@|$BPASS|g" -e "s|@MAILDIR@|$run/local|g" \
            -e "s|@STATE@|$run/state|g" -e "s|@CAFILE@|$run/ssl/cert.pem|g" \
            -e "s|@BENCH@|$BENCH|g" -e "s|@RUNAS@|$runas|g"
    }
    for f in "$BENCH/tools/$tool"/*.tmpl; do
        out="$run/state/$(basename "${f%.tmpl}")"
        subst < "$f" > "$out"
    done
    TOOL_CMD=$(printf '%s' "$CMD" | subst)
    if [ -n "$PREPARE" ]; then bash -c "$(printf '%s' "$PREPARE" | subst)"; fi
    if [ -n "$RUN_AS" ]; then chown -R "$RUN_AS:" "$run/state" "$run/local"; fi
}

reset_local() {  # TOOL RUNDIR PORT : empty local Maildir + state
    rm -rf "$2/state" "$2/local"
    render "$1" "$2" "$3"
}

FAILS=0
wire_bytes() {  # DOVECOT_LOG OFFSET -> "in out sessions" of the IMAP sessions logged after OFFSET
    # Dovecot logs every imap session's end as "Disconnected: ... in=N out=M": bytes read
    # from / written to the client by the imap process (after login; the greeting,
    # CAPABILITY and LOGIN exchanged with imap-login are not included).
    python3 - "$1" "$2" <<'PY'
import re, sys
with open(sys.argv[1], "rb") as fh:
    fh.seek(int(sys.argv[2]))
    data = fh.read().decode("utf-8", "replace")
i = o = n = 0
for m in re.finditer(r"imap\(.*?\).*? in=(\d+) out=(\d+)", data):
    i += int(m.group(1)); o += int(m.group(2)); n += 1
print(i, o, n)
PY
}

busy_start() {  # with BUSY_WRITER=1: a dd writing 2 GiB files on WORK's filesystem, one after another
    [ "$BUSY_WRITER" = 1 ] || return 0
    setsid bash -c 'while :; do dd if=/dev/zero of="$1/busy.dd" bs=1M count=2048 status=none; rm -f "$1/busy.dd"; done' \
        busy "$WORK" </dev/null >/dev/null 2>&1 &
    BUSY_PID=$!
    sleep 1   # the writer's dirty pages pile up before the tool starts
}
busy_stop() {
    [ -n "$BUSY_PID" ] || return 0
    kill -- "-$BUSY_PID" 2>/dev/null || true
    wait "$BUSY_PID" 2>/dev/null || true
    BUSY_PID=""
    rm -f "$WORK/busy.dd"
}

measure_step() {  # SCENARIO TOOL SIZE STEP REP RUNDIR
    local sc=$1 tool=$2 size=$3 step=$4 rep=$5 run=$6
    local tag="$sc-$tool-$size-$step-$rep" L="$WORK/logs" qw dlog off wire
    qw=$(python3 -c "print(max(0.0, min($QUIET_WAIT, $QUIET_BUDGET - $QUIET_SPENT)))")
    dlog="$run/log/dovecot.log"
    sync
    off=$(stat -c %s "$dlog" 2>/dev/null || echo 0)
    busy_start
    "${NICE[@]}" python3 "$BENCH/measure.py" --json "$L/$tag.json" --server-pid "$(cat "$run/dovecot.pid")" \
        --log "$L/$tag.log" --time-v "$L/$tag.timev" --timeout "$CMD_TIMEOUT" --cwd "$run/state" \
        --quiet-wait "$qw" --quiet-cores "$QUIET_CORES" \
        -- sh -c "exec $TOOL_CMD" >/dev/null
    busy_stop
    sleep 0.2   # measure.py waited for the imap processes to exit; let the log process write
    wire=$(wire_bytes "$dlog" "$off" 2>/dev/null || echo "0 0 0")
    python3 "$BENCH/verify.py" --port "$PORT" --user "$BUSER" --password "$BPASS" \
        --maildir "$run/local" --sample "$VERIFY_SAMPLE" --json "$L/$tag.verify.json" \
        > "$L/$tag.verify.txt" 2>&1 || true
    if ! python3 - "$L/$tag.json" "$L/$tag.verify.json" "$sc" "$tool" "$size" "$step" "$rep" "$RESULTS" $wire <<'PY'
import json, sys, time
m = json.load(open(sys.argv[1]))
try:
    v = json.load(open(sys.argv[2]))
except Exception as e:
    v = {"ok": False, "errors": ["verify crashed: %s" % e]}
row = {"scenario": sys.argv[3], "tool": sys.argv[4], "size": int(sys.argv[5]), "step": sys.argv[6],
       "rep": int(sys.argv[7]), **m, "correct": bool(v.get("ok")) and m["rc"] == 0,
       "verify_ok": bool(v.get("ok")), "verify_error": (v.get("errors") or [""])[0],
       "server_total": v.get("server_total"), "local_total": v.get("local_total"),
       "wire_in_bytes": int(sys.argv[9]), "wire_out_bytes": int(sys.argv[10]),
       "imap_sessions": int(sys.argv[11]),
       "ts": time.strftime("%Y-%m-%dT%H:%M:%S")}
open(sys.argv[8], "a").write(json.dumps(row, ensure_ascii=False) + "\n")
print("%-8s %-12s %6d %-11s #%d  wall %7.2fs  cpu %7.2fs  rss %6.1fMB  srv %6.2fs  bg %5.2fs  wire %d/%d B (%d sess)  rc=%d  %s%s" % (
    row["scenario"], row["tool"], row["size"], row["step"], row["rep"], row["wall_s"], row["cpu_s"],
    row["maxrss_mb"], row["server_cpu_s"] or 0, row["bg_cpu_s"], row["wire_in_bytes"], row["wire_out_bytes"],
    row["imap_sessions"], row["rc"], "OK" if row["correct"] else "FAIL",
    "" if row["correct"] else "  (" + row["verify_error"] + ")"), file=sys.stderr)
sys.exit(0 if row["correct"] else 1)
PY
    then
        FAILS=$((FAILS + 1))
    fi
    QUIET_SPENT=$(python3 -c "import json; print($QUIET_SPENT + json.load(open('$L/$tag.json'))['quiet_waited_s'])")
}

tool_max() {  # TOOL -> max size
    local tool=$1 v
    MAX_SIZE=""; source "$BENCH/tools/$tool/tool.env"
    v="MAXSIZE_$tool"; v=${!v:-${MAX_SIZE:-999999999}}
    echo "$v"
}

# ------------------------------------------------------------------ base scenario
for size in $SIZES; do
    make_template "$size"
    k=$((size * MUTATE_PCT / 100)); [ "$k" -ge 1 ] || k=1
    if [ "$size" -gt "$LARGE" ]; then ireps=$INITIAL_REPS_LARGE; else ireps=$REPS; fi
    for tool in $TOOLS; do
        if [ "$size" -gt "$(tool_max "$tool")" ]; then
            log "SKIP $tool at $size messages (MAXSIZE_$tool=$(tool_max "$tool"))"
            echo "{\"scenario\":\"base\",\"tool\":\"$tool\",\"size\":$size,\"step\":\"skipped\"}" >> "$RESULTS.skipped"
            continue
        fi
        run="$WORK/run-$tool-$size"
        log "=== $tool, $size messages"
        for rep in $(seq 1 "$ireps"); do
            fresh_server "$run" "$size"
            reset_local "$tool" "$run" "$PORT"
            measure_step "base$SCTAG" "$tool" "$size" initial "$rep" "$run"
        done
        for rep in $(seq 1 "$REPS"); do
            measure_step "base$SCTAG" "$tool" "$size" noop "$rep" "$run"
        done
        for rep in $(seq 1 "$REPS"); do
            python3 "$BENCH/mutate.py" server --port "$PORT" --count "$k" --seed "$rep" \
                --gen-seed "$SEED" >> "$WORK/logs/mutate.log" 2>&1 || log "mutate server failed"
            sleep "$SETTLE_S"
            measure_step "base$SCTAG" "$tool" "$size" server1pct "$rep" "$run"
        done
        for rep in $(seq 1 "$REPS"); do
            python3 "$BENCH/mutate.py" local --maildir "$run/local" --count "$k" --seed "$((100 + rep))" \
                --gen-seed "$SEED" >> "$WORK/logs/mutate.log" 2>&1 || log "mutate local failed"
            sleep "$SETTLE_S"
            measure_step "base$SCTAG" "$tool" "$size" local1pct "$rep" "$run"
        done
        server_down "$run"
        [ "$KEEP" = 1 ] || rm -rf "$run"
    done
done

# ------------------------------------------------------------------ latency scenario
run_latency() {  # SCENARIO DELAY_ONE_WAY_MS
    local sc=$1 delay=$2 size=$LATENCY_SIZE tool run
    make_template "$size"
    for tool in $LATENCY_TOOLS; do
        if [ "$size" -gt "$(tool_max "$tool")" ]; then log "SKIP $tool latency"; continue; fi
        run="$WORK/run-$tool-lat"
        log "=== $sc: $tool, $size messages, +${delay} ms each way"
        "${NICE[@]}" python3 "$BENCH/latency-proxy.py" --listen "127.0.0.1:$PROXY_PORT" --target "127.0.0.1:$PORT" \
            --delay-ms "$delay" --pidfile "$WORK/proxy.pid" 2>>"$WORK/logs/proxy.log" &
        PROXY_PID=$!
        sleep 0.3
        for rep in $(seq 1 "$LATENCY_REPS"); do
            fresh_server "$run" "$size"
            reset_local "$tool" "$run" "$PROXY_PORT"
            measure_step "$sc" "$tool" "$size" initial "$rep" "$run"
        done
        for rep in $(seq 1 "$REPS"); do
            measure_step "$sc" "$tool" "$size" noop "$rep" "$run"
        done
        kill "$PROXY_PID" 2>/dev/null || true; wait "$PROXY_PID" 2>/dev/null || true; PROXY_PID=""
        server_down "$run"
        [ "$KEEP" = 1 ] || rm -rf "$run"
    done
}
if [ "$LATENCY" = 1 ]; then
    half=$(python3 -c "print($LATENCY_RTT_MS/2)")
    run_latency "rtt${LATENCY_RTT_MS}ms$SCTAG" "$half"
    [ "$LATENCY_CONTROL" = 1 ] && run_latency "proxy0ms$SCTAG" 0
fi

python3 "$BENCH/report.py" "$RESULTS" > "$WORK/results.md"
cat "$WORK/results.md"
log "done in $(( $(date +%s) - START )) s (quiet-waits: ${QUIET_SPENT} s); $FAILS failed/incorrect steps; results: $RESULTS, $WORK/results.md"
# exit status: 0 = every step correct, 1 = some step failed or did not verify
[ "$FAILS" -eq 0 ]
