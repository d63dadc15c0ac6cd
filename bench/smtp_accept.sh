#!/usr/bin/env bash
# SMTP acceptance: Sealpost (SQLite, PostgreSQL) against Postfix under the same smtp-source load.
#
# Uses the shared baselines in $SHARED (/work/shared/bench): bench_common.sh's smtp-source
# command line (N messages, C sessions, SIZE bytes, one message per connection unless REUSE=1)
# and postfix_baseline.sh as the reference.  For each Sealpost run:
#
#   fresh data dir (+ a fresh PostgreSQL schema), tenant "Bench" with 127.0.0.1/32 as its
#   relay network (smtp-source does no AUTH), `sealpost serve --role smtp` (SMTP listeners +
#   ledger sequencer; no delivery worker, no certificate issuer), then
#   1. smtp-source: wall time until all N messages got their 250 -> accept_mps;
#      then SELECT count(*) FROM communications must be N;
#   2. bench/smtp_latency.py (asyncio client, same C/SIZE, LAT_N messages): p50/p99 of
#      end-of-DATA -> 250 and of the whole session;
#   3. VmHWM of the server (peak RSS) before stopping it.
# Then, once per backend in BIG_BACKENDS, a fresh server gets one message with a BIG_MB MiB
# attachment: VmHWM before/after (growth).
#
# Usage (as root: Postfix's master must start as root):
#   bash bench/smtp_accept.sh                        # R=3 interleaved + the 25 MB runs + table
#   R=1 TARGETS="sealpost-sqlite" BIG=0 bash bench/smtp_accept.sh
#   bash bench/smtp_accept.sh one sealpost-postgres  # one run, one RESULT line
#   bash bench/smtp_accept.sh big sqlite             # the attachment run alone
#   PROFILE=1 bash bench/smtp_accept.sh one sealpost-sqlite   # + py-spy during smtp-source
#
# Knobs (env): N C SIZE REUSE SRC_EXTRA TIMEOUT (bench_common.sh), R, TARGETS (postfix
# sealpost-sqlite sealpost-postgres), OUT (results file), LAT_N (latency-client messages,
# default 2000; 0 skips it), BIG (1: run the attachment test), BIG_MB (25), BIG_BACKENDS
# ("sqlite postgres"), SP_PORT/SP_TLS_PORT/SP_INBOUND_PORT (2528/2529/2530), PG_DSN
# (postgresql://postgres@127.0.0.1:5432/test), SP_ENV ("K=V ..." extra SEALPOST_* settings;
# default SEALPOST_SMTP_PROCESSES=2, the issue's set-up; SP_ENV="" runs one process; the
# attachment run always uses one), 
# PROFILE (1: py-spy record of the server during smtp-source; PROFILE_GIL=1: only the thread
# holding the GIL), PROFILE_DIR (/tmp),
# KEEP (1: keep the data dir and schema for inspection).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
SHARED=${SHARED:-/work/shared/bench}
# shellcheck source=/work/shared/bench/bench_common.sh
. "$SHARED/bench_common.sh"

R=${R:-3}
TARGETS=${TARGETS:-"postfix sealpost-sqlite sealpost-postgres"}
OUT=${OUT:-/tmp/smtp-accept-results.txt}
LAT_N=${LAT_N:-2000}
BIG=${BIG:-1}
BIG_MB=${BIG_MB:-25}
BIG_BACKENDS=${BIG_BACKENDS:-"sqlite postgres"}
SP_PORT=${SP_PORT:-2528}
SP_TLS_PORT=${SP_TLS_PORT:-2529}         # empty does not disable it (pydantic: int parsing)
SP_INBOUND_PORT=${SP_INBOUND_PORT:-2530} # idem; so both get their own free port
PG_DSN=${PG_DSN:-postgresql://postgres@127.0.0.1:5432/test}
SP_ENV=${SP_ENV-SEALPOST_SMTP_PROCESSES=2}  # unset: 2 acceptor processes (issue 16); "" for one
PROFILE=${PROFILE:-0}
PROFILE_DIR=${PROFILE_DIR:-/tmp}
KEEP=${KEEP:-0}
SEALPOST=${SEALPOST:-$ROOT/.venv/bin/sealpost}
PY=${PY:-$ROOT/.venv/bin/python}
PYSPY=${PYSPY:-$ROOT/.venv/bin/py-spy}
STATE=${STATE:-/tmp/sealpost-bench.state}  # pids/schema/dir of the current run, for leftovers
RESULTS=${RESULTS:-}

# ---------------------------------------------------------------------------------------------
# One Sealpost run (called as `smtp_accept.sh one|big ...`, i.e. in its own process + trap)
# ---------------------------------------------------------------------------------------------
SRV_PID= SPY_PID= SCHEMA= WORK=

psql_q() { psql "$PG_DSN" -v ON_ERROR_STOP=1 -qAtX "$@"; }

sp_cleanup() {
  local pid i
  kill_pidfile "$STATE/source.pid" timeout
  if [ -n "$SPY_PID" ] && kill -0 "$SPY_PID" 2>/dev/null; then
    kill -INT "$SPY_PID" 2>/dev/null || true; wait "$SPY_PID" 2>/dev/null || true
  fi
  kill_pidfile "$STATE/pyspy.pid" py-spy
  # the server: ours (SRV_PID) or a leftover recorded by an interrupted run
  pid=${SRV_PID:-$(cat "$STATE/server.pid" 2>/dev/null || true)}
  if [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm")" = sealpost ]; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 200; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    [ -n "$SRV_PID" ] && { wait "$SRV_PID" 2>/dev/null || true; }
  fi
  rm -f "$STATE/server.pid"
  SCHEMA=${SCHEMA:-$(cat "$STATE/schema" 2>/dev/null || true)}
  WORK=${WORK:-$(cat "$STATE/workdir" 2>/dev/null || true)}
  if [ "$KEEP" = 1 ]; then
    [ -n "$WORK$SCHEMA" ] && log "kept: dir $WORK schema ${SCHEMA:-none}"
  else
    if [ -n "$SCHEMA" ]; then
      psql_q -c "DROP SCHEMA IF EXISTS \"$SCHEMA\" CASCADE" >/dev/null 2>&1 \
        || log "could not drop schema $SCHEMA"
    fi
    case $WORK in /tmp/sealpost-bench.*) rm -rf "$WORK" ;; esac
  fi
  rm -f "$STATE/schema" "$STATE/workdir"
}

hwm_kb() { awk '/^VmHWM:/{print $2}' "/proc/$1/status"; }
rss_kb() { awk '/^VmRSS:/{print $2}' "/proc/$1/status"; }
# utime+stime of a process and of its children still running (the acceptor processes of
# SEALPOST_SMTP_PROCESSES>1 are children of the server)
cpu_ticks() {
  local p t=0
  for p in "$1" $(pgrep -P "$1" || true); do
    t=$((t + $(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}' || echo 0)))
  done
  echo "$t"
}
TCK=$(getconf CLK_TCK)
kv() { sed -n "s/.*[[:space:]]$1=\([^[:space:]]*\).*/\1/p" <<<"$2"; }  # kv KEY LINE

# sql QUERY -> one value, from the run's database
sql() {
  if [ "$BACKEND" = postgres ]; then
    psql_q -c "SET search_path TO \"$SCHEMA\"; $1"
  else
    sqlite3 -batch "$WORK/data/sealpost.db" ".timeout 30000" "$1"
  fi
}

# sp_start BACKEND [MAX_MESSAGE_BYTES]: fresh data dir/schema, tenant + relay network, server
sp_start() {
  BACKEND=$1
  local max=${2:-} v
  command -v sqlite3 >/dev/null || die "sqlite3 CLI missing (apt-get install sqlite3)"
  [ -x "$SEALPOST" ] || die "no $SEALPOST (make the venv first)"
  mkdir -p "$STATE"
  sp_cleanup   # leftovers of an interrupted run
  SCHEMA= WORK=
  for p in "$SP_PORT" "$SP_TLS_PORT" "$SP_INBOUND_PORT"; do
    port_busy "$p" && die "port $p already in use by something else"
  done
  WORK=$(mktemp -d /tmp/sealpost-bench.XXXXXX)
  echo "$WORK" >"$STATE/workdir"
  # only our settings: nothing inherited from the caller's environment or a .env file
  while read -r v; do unset "$v"; done < <(compgen -e | grep '^SEALPOST_' || true)
  export SEALPOST_DATA_DIR=$WORK/data SEALPOST_SMTP_HOST=127.0.0.1 \
    SEALPOST_SMTP_SUBMISSION_PORT=$SP_PORT SEALPOST_SMTP_TLS_PORT=$SP_TLS_PORT \
    SEALPOST_SMTP_INBOUND_PORT=$SP_INBOUND_PORT SEALPOST_LOG_LEVEL=WARNING
  [ -n "$max" ] && export SEALPOST_SMTP_MAX_MESSAGE_BYTES=$max
  for v in $SP_ENV; do export "${v?}"; done
  if [ "$BACKEND" = postgres ]; then
    command -v psql >/dev/null || die "psql missing"
    SCHEMA=sealpost_bench_$$_$RANDOM
    echo "$SCHEMA" >"$STATE/schema"
    psql_q -c "CREATE SCHEMA \"$SCHEMA\"" || die "cannot create schema $SCHEMA on $PG_DSN"
    local sep='?'; case $PG_DSN in *\?*) sep='&' ;; esac
    export SEALPOST_DATABASE_URL="$PG_DSN${sep}options=-csearch_path%3D$SCHEMA"
  fi
  cd "$WORK"   # Settings also reads ./.env: run where there is none
  "$SEALPOST" tenant create Bench >"$WORK/tenant.out" 2>&1 \
    || { cat "$WORK/tenant.out" >&2; die "sealpost tenant create failed"; }
  "$SEALPOST" tenant smtp-network Bench 127.0.0.1/32 >>"$WORK/tenant.out" 2>&1 \
    || { cat "$WORK/tenant.out" >&2; die "sealpost tenant smtp-network failed"; }
  "$SEALPOST" serve --role smtp >"$WORK/server.out" 2>&1 &
  SRV_PID=$!
  echo "$SRV_PID" >"$STATE/server.pid"
  wait_port "$SP_PORT" 30 || { cat "$WORK/server.out" >&2; die "sealpost did not start"; }
  sleep 1   # let the sequencer's start-up sealing and the imports settle
  kill -0 "$SRV_PID" 2>/dev/null || { cat "$WORK/server.out" >&2; die "sealpost exited"; }
}

sp_stop() {   # SIGTERM; a clean exit is part of the check
  local rc=0
  kill -TERM "$SRV_PID"
  wait "$SRV_PID" || rc=$?
  SRV_PID=
  rm -f "$STATE/server.pid"
  [ "$rc" = 0 ] || { tail -20 "$WORK/server.out" >&2; die "sealpost exited with $rc on SIGTERM"; }
}

emit() {
  machine_note
  echo "$1"
  [ -n "$RESULTS" ] && echo "$1" >>"$RESULTS"
  return 0
}

# one_run sealpost-sqlite|sealpost-postgres
one_run() {
  local target=$1 backend=${1#sealpost-} t0 t1 acc_s comms lat="" lat_line hwm_src rss0 c0 c1
  case $backend in sqlite | postgres) ;; *) die "unknown sealpost target $target" ;; esac
  trap sp_cleanup EXIT
  trap 'exit 130' INT TERM
  sp_start "$backend"
  rss0=$(rss_kb "$SRV_PID")
  if [ "$PROFILE" = 1 ]; then
    [ -x "$PYSPY" ] || die "py-spy missing: $ROOT/.venv/bin/pip install py-spy"
    local prof="$PROFILE_DIR/sealpost-$backend-$(date +%H%M%S)"
    # shellcheck disable=SC2046
    "$PYSPY" record --pid "$SRV_PID" --rate 100 --threads --format raw -o "$prof.txt" \
      $([ "${PROFILE_GIL:-0}" = 1 ] && echo --gil) >"$WORK/pyspy.out" 2>&1 &
    SPY_PID=$!
    echo "$SPY_PID" >"$STATE/pyspy.pid"
    sleep 1
  fi
  log "$target: N=$N C=$C SIZE=$SIZE REUSE=$REUSE"
  log "cmd: $(source_cmd "$SP_PORT")"
  c0=$(cpu_ticks "$SRV_PID")
  t0=$(now)
  run_source "$SP_PORT" "$WORK/source.out" "$STATE/source.pid" \
    || { tail -5 "$WORK/source.out" >&2; tail -20 "$WORK/server.out" >&2; die "smtp-source failed (a message was not accepted?)"; }
  t1=$(now)
  c1=$(cpu_ticks "$SRV_PID")
  acc_s=$(elapsed "$t0" "$t1")
  hwm_src=$(hwm_kb "$SRV_PID")
  if [ -n "$SPY_PID" ]; then
    kill -INT "$SPY_PID"; wait "$SPY_PID" || true; SPY_PID=; rm -f "$STATE/pyspy.pid"
    log "profile: $prof.txt (collapsed stacks; python3 $HERE/pyspy_top.py $prof.txt)"
  fi
  comms=$(sql "SELECT count(*) FROM communications")
  [ "$comms" = "$N" ] || die "expected $N communications after smtp-source, found $comms"

  if [ "$LAT_N" -gt 0 ]; then
    log "latency client: $LAT_N messages, $C sessions"
    lat_line=$("$PY" "$HERE/smtp_latency.py" --port "$SP_PORT" -n "$LAT_N" -c "$C" --size "$SIZE") \
      || { echo "$lat_line" >&2; die "latency client: some messages were not accepted"; }
    lat="lat_n=$LAT_N lat_mps=$(kv mps "$lat_line") data_p50_ms=$(kv data_p50_ms "$lat_line")"
    lat+=" data_p99_ms=$(kv data_p99_ms "$lat_line") session_p50_ms=$(kv session_p50_ms "$lat_line")"
    lat+=" session_p99_ms=$(kv session_p99_ms "$lat_line")"
  fi
  local hwm total records unsealed attempts queued
  hwm=$(hwm_kb "$SRV_PID")
  total=$(sql "SELECT count(*) FROM communications")
  records=$(sql "SELECT count(*) FROM evidence_records WHERE event = 'SubmissionAcceptance'")
  unsealed=$(sql "SELECT count(*) FROM evidence_records WHERE leaf_index IS NULL")
  attempts=$(sql "SELECT count(*) FROM delivery_attempts")
  queued=$(sql "SELECT count(*) FROM communications WHERE status = 'queued'")
  sp_stop
  [ "$total" = $((N + LAT_N)) ] || die "expected $((N + LAT_N)) communications, found $total"
  [ "$records" = "$total" ] || die "expected $total SubmissionAcceptance records, found $records"
  [ "$attempts" = 0 ] && [ "$queued" = "$total" ] \
    || die "delivery ran during the measure ($attempts attempts, $queued/$total queued)"
  emit "RESULT target=$target N=$N C=$C SIZE=$SIZE REUSE=$REUSE accept_s=$acc_s accept_mps=$(rate "$N" "$acc_s") server_cpu_s=$(awk -v t=$((c1 - c0)) -v k="$TCK" 'BEGIN{printf "%.2f", t/k}') server_cpu_ms_per_msg=$(awk -v t=$((c1 - c0)) -v k="$TCK" -v n="$N" 'BEGIN{printf "%.2f", 1000*t/k/n}') communications=$total records=$records unsealed_at_stop=$unsealed rss_start_kb=$rss0 peak_rss_source_kb=$hwm_src peak_rss_kb=$hwm $lat"
}

# big_run sqlite|postgres: one message with a BIG_MB MiB attachment to a fresh server
big_run() {
  local backend=$1 before after rss_after line warm
  trap sp_cleanup EXIT
  trap 'exit 130' INT TERM
  SP_ENV="$SP_ENV SEALPOST_SMTP_PROCESSES=1"  # one process: the message lands where we look
  sp_start "$backend" $((BIG_MB * 2 * 1024 * 1024 + 1048576))   # base64: x1.37 on the wire
  # one small message first, so lazy imports and the writer thread exist before "before"
  warm=$("$PY" "$HERE/smtp_latency.py" --port "$SP_PORT" -n 1 -c 1 --size "$SIZE") \
    || { echo "$warm" >&2; die "warm-up message refused"; }
  before=$(hwm_kb "$SRV_PID")
  log "sealpost-$backend: one message with a $BIG_MB MiB attachment"
  line=$("$PY" "$HERE/smtp_latency.py" --port "$SP_PORT" --attachment-mb "$BIG_MB") \
    || { echo "$line" >&2; tail -20 "$WORK/server.out" >&2; die "the big message was refused"; }
  after=$(hwm_kb "$SRV_PID")
  rss_after=$(rss_kb "$SRV_PID")
  local wire total
  wire=$(find "$WORK/data/blobs" -type f -size +1M -printf '%s\n' | sort -n | tail -1)
  total=$(sql "SELECT count(*) FROM communications")
  sp_stop
  [ "$total" = 2 ] || die "expected 2 communications, found $total"
  emit "RESULT target=sealpost-$backend-attachment attachment_mib=$BIG_MB message_bytes=${wire:-?} data_ms=$(kv data_p50_ms "$line") session_ms=$(kv session_p50_ms "$line") hwm_before_kb=$before hwm_after_kb=$after growth_kb=$((after - before)) rss_after_kb=$rss_after"
}

# ---------------------------------------------------------------------------------------------
# The suite
# ---------------------------------------------------------------------------------------------
suite() {
  [ "$(id -u)" = 0 ] || case " $TARGETS " in *" postfix "*) die "run as root (Postfix)" ;; esac
  : >"$OUT"
  export RESULTS=$OUT
  { echo "# $(date -Is) $(nproc) cpus, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo); load before: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "# N=$N C=$C SIZE=$SIZE REUSE=$REUSE R=$R LAT_N=$LAT_N TARGETS=\"$TARGETS\" BIG=$BIG BIG_MB=$BIG_MB"; } | tee -a "$OUT"
  local i t
  for ((i = 1; i <= R; i++)); do
    for t in $TARGETS; do
      log "=== run $i/$R: $t"
      case $t in
        postfix) bash "$SHARED/postfix_baseline.sh" ;;
        aiosmtpd) VENV=${VENV:-$ROOT/.venv} bash "$SHARED/aiosmtpd_baseline.sh" ;;
        sealpost-sqlite | sealpost-postgres) bash "${BASH_SOURCE[0]}" one "$t" ;;
        *) die "unknown target $t" ;;
      esac
      sleep 2
    done
  done
  if [ "$BIG" = 1 ]; then
    for t in $BIG_BACKENDS; do bash "${BASH_SOURCE[0]}" big "$t"; sleep 1; done
  fi
  echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT"
  python3 "$HERE/smtp_accept_table.py" "$OUT"
}

case ${1:-suite} in
  suite) suite ;;
  one) one_run "${2:?one sealpost-sqlite|sealpost-postgres}" ;;
  big) big_run "${2:?big sqlite|postgres}" ;;
  table) python3 "$HERE/smtp_accept_table.py" "${2:-$OUT}" ;;
  *) die "usage: $0 [suite | one sealpost-sqlite|sealpost-postgres | big sqlite|postgres | table FILE]" ;;
esac
