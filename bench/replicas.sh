#!/usr/bin/env bash
# Two (or N) Lantern replicas behind nginx with sticky sessions, sharing one local Ray head for their jobs.
#
#   bench/replicas.sh [start]   start a Ray head, the replicas and nginx; wait for health; print the URL
#   bench/replicas.sh status    health and resident memory (RSS) of every process of the set-up
#   bench/replicas.sh stop      stop nginx, the replicas and the Ray head (only the processes this script started)
#
# Everything listens on 127.0.0.1 only. Settings (environment variables, defaults in brackets):
#   REPLICAS [2]  BASE_PORT [8601] (replica i listens on BASE_PORT + i - 1)  PROXY_PORT [8600]
#   RAY_PORT [6390]  RAY_CPUS [2] (CPUs the Ray head offers to jobs)  RAY_OBJECT_STORE_MB [256]
#   STATE [artifacts/replicas] (pid files, logs, the rendered nginx.conf, the shared cookie secret)
#   Any LANTERN_* variable set when calling the script reaches every replica unchanged (they must match).
#   LANTERN_MAX_CONCURRENT_JOBS [RAY_CPUS / REPLICAS, at least 1] is per replica: the replicas' slots together
#   should not exceed the CPUs the Ray cluster offers, or jobs that show "running" wait inside Ray.
# Needs what `make setup-dev` installs (.venv with Streamlit and Ray); nginx comes from Debian's package and is
# installed with apt-get when missing (as root, or through sudo). See docs/REPLICAS.md.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
REPLICAS=${REPLICAS:-2}
BASE_PORT=${BASE_PORT:-8601}
PROXY_PORT=${PROXY_PORT:-8600}
RAY_PORT=${RAY_PORT:-6390}
RAY_CPUS=${RAY_CPUS:-2}
RAY_OBJECT_STORE_MB=${RAY_OBJECT_STORE_MB:-256}
STATE=${STATE:-$ROOT/artifacts/replicas}
case "$STATE" in /*) ;; *) STATE=$ROOT/$STATE ;; esac
PY=$ROOT/.venv/bin/python
HOST=127.0.0.1
UPLOAD_MB=$(sed -n 's/^maxUploadSize *= *\([0-9]*\).*/\1/p' .streamlit/config.toml | head -1)
UPLOAD_MB=${UPLOAD_MB:-50}
START_TIMEOUT_S=${START_TIMEOUT_S:-240}
# Ray's sockets live under its temp dir; a Unix socket path must stay short, so not under $STATE.
RAY_TMP=/tmp/lantern-ray-$PROXY_PORT

say() { printf '%s\n' "$*"; }
die() { printf 'replicas.sh: %s\n' "$*" >&2; exit 1; }

alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }
pid_of() { [ -f "$1" ] && cat "$1" || true; }

health() {  # health URL -> "ok" or nothing
    "$PY" - "$1" <<'PY' 2>/dev/null || true
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1] + "/_stcore/health", timeout=2) as r:
        print(r.read().decode())
except Exception:
    pass
PY
}

ray_pids() {  # every process of our Ray head: those naming our temp dir, and their descendants (agents, workers)
    local entry pid roots=()
    for entry in /proc/[0-9]*; do
        pid=${entry#/proc/}
        if tr '\0' ' ' 2>/dev/null <"$entry/cmdline" | grep -qF -- "$RAY_TMP"; then roots+=("$pid"); fi
    done
    [ ${#roots[@]} -gt 0 ] || return 0
    # pid ppid of every process (the command name in /proc/PID/stat may hold spaces: cut after its ")").
    for entry in /proc/[0-9]*; do
        sed -n 's/^\([0-9]*\) .*) [A-Za-z] \([0-9]*\) .*/\1 \2/p' "$entry/stat" 2>/dev/null
    done | awk -v roots="${roots[*]}" '
        { parent[$1] = $2 }
        END {
            n = split(roots, r, " "); for (i = 1; i <= n; i++) keep[r[i]] = 1
            do { added = 0; for (p in parent) if (!(p in keep) && (parent[p] in keep)) { keep[p] = 1; added = 1 } } while (added)
            for (p in keep) print p
        }' | sort -n
}

children() {  # direct children of a pid (from /proc)
    local entry
    for entry in /proc/[0-9]*; do
        if [ "$(sed -n 's/.*) [A-Za-z] \([0-9]*\) .*/\1/p' "$entry/stat" 2>/dev/null)" = "$1" ]; then
            echo "${entry#/proc/}"
        fi
    done
}

stop_pids() {  # TERM, wait up to 20 s, then KILL; only the given ids
    [ $# -gt 0 ] || return 0
    local pids=("$@") deadline
    kill -TERM "${pids[@]}" 2>/dev/null || true
    deadline=$((SECONDS + 20))
    while [ $SECONDS -lt $deadline ]; do
        local left=0 p
        for p in "${pids[@]}"; do alive "$p" && left=1; done
        [ $left = 0 ] && return 0
        sleep 0.5
    done
    local p
    for p in "${pids[@]}"; do alive "$p" && say "  $p ($(ray_name "$p")) did not stop within 20 s: killed"; done
    kill -KILL "${pids[@]}" 2>/dev/null || true
}

ensure_nginx() {
    NGINX=$(command -v nginx || true)
    [ -z "$NGINX" ] && [ -x /usr/sbin/nginx ] && NGINX=/usr/sbin/nginx
    if [ -z "$NGINX" ]; then
        say "nginx is missing: installing Debian's package"
        local sudo=""
        [ "$(id -u)" = 0 ] || sudo=sudo
        # policy-rc.d or not, we never use the system service: stop it if the package started it.
        $sudo apt-get update -qq
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null
        NGINX=/usr/sbin/nginx
    fi
    [ -x "$NGINX" ] || die "nginx could not be installed"
}

render_nginx_conf() {
    mkdir -p "$STATE/nginx"
    local servers="" i user_line=""
    for ((i = 0; i < REPLICAS; i++)); do
        servers+="        server $HOST:$((BASE_PORT + i)) max_fails=1 fail_timeout=10s;"$'\n'
    done
    # As root, nginx's workers would switch to www-data/nobody, who cannot write our temp paths.
    [ "$(id -u)" = 0 ] && user_line="user root;"
    awk -v state="$STATE" -v listen="$HOST:$PROXY_PORT" -v upload="$UPLOAD_MB" -v user_line="$user_line" \
        -v servers="${servers%$'\n'}" '
        { gsub(/@STATE@/, state); gsub(/@LISTEN@/, listen); gsub(/@UPLOAD_MB@/, upload) }
        /@USER_LINE@/ { print user_line; next }
        /@UPSTREAM_SERVERS@/ { print servers; next }
        { print }' bench/nginx/lantern.conf.template >"$STATE/nginx/nginx.conf"
}

start() {
    [ -x "$PY" ] || die "no .venv here: run \`make setup-dev\` first"
    "$PY" -c "import streamlit, ray" 2>/dev/null || die ".venv lacks streamlit or ray: run \`make setup-dev\`"
    ensure_nginx
    mkdir -p "$STATE"
    local i port
    for ((i = 0; i < REPLICAS; i++)); do
        port=$((BASE_PORT + i))
        alive "$(pid_of "$STATE/replica-$port.pid")" && die "replica on $port is already running: bench/replicas.sh stop"
    done
    [ -n "$(ray_pids)" ] && die "a Ray head under $RAY_TMP is already running: bench/replicas.sh stop"

    # One cookie secret for every replica (signed cookies stay valid whichever replica reads them).
    if [ ! -s "$STATE/cookie_secret" ]; then
        (umask 077; "$PY" -c "import secrets; print(secrets.token_hex(32))" >"$STATE/cookie_secret")
    fi
    local secret
    secret=$(cat "$STATE/cookie_secret")
    # Ray 2.60's `ray start` turns token authentication on: the head and every driver (the replicas) read the
    # same token. Our own file, not ~/.ray/auth_token: other Ray users of this machine keep theirs.
    if [ ! -s "$STATE/ray_auth_token" ]; then
        (umask 077; "$PY" -c "import secrets; print(secrets.token_hex(32))" >"$STATE/ray_auth_token")
    fi
    export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="$STATE/ray_auth_token"

    say "Ray head on $HOST:$RAY_PORT ($RAY_CPUS CPUs) …"
    rm -rf "$RAY_TMP"
    local ports
    ports=$("$PY" - <<'PY'
import socket
socks = [socket.socket() for _ in range(8)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
PY
)
    read -r p_client p_agent_http p_agent_grpc p_metrics p_runtime_env p_node p_object p_dashboard <<<"$ports"
    # Fixed ports of their own: another Ray on this machine (a test's ray.init()) must not collide with ours.
    RAY_USAGE_STATS_ENABLED=0 "$ROOT/.venv/bin/ray" start --head --node-ip-address=$HOST --port="$RAY_PORT" \
        --num-cpus="$RAY_CPUS" --num-gpus=0 --object-store-memory=$((RAY_OBJECT_STORE_MB * 1024 * 1024)) \
        --include-dashboard=false --dashboard-port="$p_dashboard" --disable-usage-stats --temp-dir="$RAY_TMP" \
        --ray-client-server-port="$p_client" --dashboard-agent-listen-port="$p_agent_http" \
        --dashboard-agent-grpc-port="$p_agent_grpc" --metrics-export-port="$p_metrics" \
        --runtime-env-agent-port="$p_runtime_env" --node-manager-port="$p_node" \
        --object-manager-port="$p_object" --min-worker-port=0 --max-worker-port=0 \
        >"$STATE/ray-start.log" 2>&1 || { cat "$STATE/ray-start.log" >&2; die "ray start failed"; }
    echo "$HOST:$RAY_PORT" >"$STATE/ray.address"
    echo "$RAY_TMP" >"$STATE/ray.tmp"

    local slots=${LANTERN_MAX_CONCURRENT_JOBS:-$((RAY_CPUS / REPLICAS > 0 ? RAY_CPUS / REPLICAS : 1))}
    for ((i = 0; i < REPLICAS; i++)); do
        port=$((BASE_PORT + i))
        say "replica $((i + 1)) on $HOST:$port ($slots job slots) …"
        # setsid: each replica leads its own process group, which `stop` ends as a whole.
        LANTERN_RAY_ADDRESS="${LANTERN_RAY_ADDRESS:-$HOST:$RAY_PORT}" LANTERN_MAX_CONCURRENT_JOBS="$slots" \
        STREAMLIT_SERVER_COOKIE_SECRET="$secret" STREAMLIT_BROWSER_GATHER_USAGE_STATS=false PYTHONUNBUFFERED=1 \
            setsid "$PY" -m streamlit run app.py --server.address $HOST --server.port "$port" \
            --server.headless true >"$STATE/replica-$port.log" 2>&1 </dev/null &
        echo $! >"$STATE/replica-$port.pid"
    done

    render_nginx_conf
    "$NGINX" -t -q -p "$STATE/nginx" -c "$STATE/nginx/nginx.conf" -e "$STATE/nginx/error.log" \
        || die "nginx rejected $STATE/nginx/nginx.conf"
    "$NGINX" -p "$STATE/nginx" -c "$STATE/nginx/nginx.conf" -e "$STATE/nginx/error.log"
    say "nginx on $HOST:$PROXY_PORT …"

    local deadline=$((SECONDS + START_TIMEOUT_S)) waiting
    while :; do
        waiting=""
        for ((i = 0; i < REPLICAS; i++)); do
            port=$((BASE_PORT + i))
            alive "$(pid_of "$STATE/replica-$port.pid")" || { tail -20 "$STATE/replica-$port.log" >&2
                die "replica on $port exited; see $STATE/replica-$port.log"; }
            [ "$(health "http://$HOST:$port")" = ok ] || waiting+=" $port"
        done
        [ -z "$waiting" ] && [ "$(health "http://$HOST:$PROXY_PORT")" = ok ] && break
        [ $SECONDS -lt $deadline ] || die "not healthy within ${START_TIMEOUT_S} s (waiting for:${waiting:- nginx})"
        sleep 1
    done
    say "ready: http://$HOST:$PROXY_PORT  ($REPLICAS replicas, Ray at $HOST:$RAY_PORT; logs in $STATE)"
}

rss_line() {  # label pid -> "label pid rss_mib"
    local kb
    kb=$(awk '/^VmRSS:/ {print $2}' "/proc/$2/status" 2>/dev/null || true)
    [ -n "$kb" ] && awk -v l="$1" -v p="$2" -v kb="$kb" 'BEGIN { printf "  %-28s %7s %6.0f MiB\n", l, p, kb / 1024 }'
    return 0
}

ray_name() {  # gcs_server, raylet, monitor.py, ray::IDLE, ray::some_job, ...
    tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline" | awk '{
        if ($1 ~ /^ray::/) { print $1; exit }
        if ($1 ~ /python[0-9.]*$/) for (i = 2; i <= NF; i++) if ($i ~ /\.py$/) { n = $i; sub(".*/", "", n); print n; exit }
        n = $1; sub(".*/", "", n); print n }'
}

status() {
    local i port pid p
    for ((i = 0; i < REPLICAS; i++)); do
        port=$((BASE_PORT + i))
        say "replica $HOST:$port: pid $(pid_of "$STATE/replica-$port.pid") health $(health "http://$HOST:$port" || true)"
    done
    say "nginx $HOST:$PROXY_PORT: pid $(pid_of "$STATE/nginx/nginx.pid") health $(health "http://$HOST:$PROXY_PORT" || true)"
    say "resident memory:"
    for ((i = 0; i < REPLICAS; i++)); do
        port=$((BASE_PORT + i))
        pid=$(pid_of "$STATE/replica-$port.pid")
        alive "$pid" && rss_line "replica :$port" "$pid"
    done
    pid=$(pid_of "$STATE/nginx/nginx.pid")
    if alive "$pid"; then
        rss_line "nginx master" "$pid"
        for p in $(children "$pid"); do rss_line "nginx worker" "$p"; done
    fi
    for p in $(ray_pids); do rss_line "ray $(ray_name "$p")" "$p"; done
}

stop() {
    local pid i port
    pid=$(pid_of "$STATE/nginx/nginx.pid")
    if alive "$pid"; then
        say "stopping nginx ($pid)"
        kill -QUIT "$pid" 2>/dev/null || true
        for _ in $(seq 40); do alive "$pid" || break; sleep 0.25; done
        alive "$pid" && kill -KILL "$pid" 2>/dev/null || true
    fi
    for f in "$STATE"/replica-*.pid; do
        [ -f "$f" ] || continue
        pid=$(cat "$f")
        if alive "$pid"; then
            say "stopping replica $(basename "$f" .pid) ($pid)"
            kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 80); do alive "$pid" || break; sleep 0.25; done
            alive "$pid" && { kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true; }
        fi
        rm -f "$f"
    done
    local ray=() first=() gcs=() p
    mapfile -t ray < <(ray_pids)
    if [ ${#ray[@]} -gt 0 ]; then
        say "stopping the Ray head (${#ray[@]} processes)"
        # The GCS last: the other daemons exit promptly on TERM while it still answers them.
        for p in "${ray[@]}"; do
            if [ "$(ray_name "$p")" = gcs_server ]; then gcs+=("$p"); else first+=("$p"); fi
        done
        stop_pids "${first[@]}"
        stop_pids "${gcs[@]}"
        # Workers the raylet started meanwhile name our temp dir too: a second pass catches them.
        mapfile -t ray < <(ray_pids)
        [ ${#ray[@]} -gt 0 ] && stop_pids "${ray[@]}"
    fi
    rm -rf "$RAY_TMP"
    say "stopped"
}

case "${1:-start}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) die "usage: bench/replicas.sh [start|status|stop]" ;;
esac
