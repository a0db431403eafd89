# Shared helpers for the benchmark scripts (sourced, not run).
#
# Method: one nginx worker, wrk -t1 -c50. By default nothing is pinned: the
# worker's Go threads, a sidecar and wrk share the machine's cores as they
# would in production. BENCH_PIN=1 pins the worker (and its Go threads,
# which inherit the mask) and any sidecar to SERVER_CPU and wrk to
# CLIENT_CPU. Each variant gets a warm-up, then a 10 s measurement; variants
# are measured in rounds (a b c, a b c, ...) and the median of the rounds is
# reported, which keeps a noisy neighbour from deciding a ratio.

BENCH_ROOT=${BENCH_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
BENCH_SECONDS=${BENCH_SECONDS:-10}
BENCH_WARMUP=${BENCH_WARMUP:-2}
BENCH_ROUNDS=${BENCH_ROUNDS:-3}
BENCH_CONNS=${BENCH_CONNS:-50}
NGINX=${NGINX:-/usr/sbin/nginx}
NGINX_MODULES=${NGINX_MODULES:-/usr/lib/nginx/modules}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
BENCH_PIN=${BENCH_PIN:-0}

# on_server_cpu CMD...: run a server-side process (pinned with BENCH_PIN=1).
on_server_cpu() {
    if [ "$BENCH_PIN" = 1 ]; then taskset -c "$SERVER_CPU" "$@"; else "$@"; fi
}

# on_server_cpu_bg CMD...: the same, started in the background. $! is then
# the process itself (taskset execs it), so `kill $!` stops it; a function
# run with & would leave $! naming a subshell, and kill would leak CMD.
on_server_cpu_bg() {
    if [ "$BENCH_PIN" = 1 ]; then taskset -c "$SERVER_CPU" "$@" & else "$@" & fi
}

# on_client_cpu CMD...: run the load generator (pinned with BENCH_PIN=1).
on_client_cpu() {
    if [ "$BENCH_PIN" = 1 ]; then taskset -c "$CLIENT_CPU" "$@"; else "$@"; fi
}

# bench_setup: one line describing the placement, for the reports.
bench_setup() {
    if [ "$BENCH_PIN" = 1 ]; then
        echo "worker and sidecars pinned to CPU $SERVER_CPU, wrk to CPU $CLIENT_CPU"
    else
        echo "nothing pinned"
    fi
}

# cpu_mask N: nginx's binary CPU mask for CPU N (0 -> 1, 1 -> 10).
cpu_mask() {
    local n=$((1 << $1)) s=""
    while [ $n -gt 0 ]; do s=$((n % 2))$s; n=$((n / 2)); done
    echo "$s"
}

# nginx_main_preamble: the lines every bench nginx.conf starts with.
nginx_main_preamble() {
    cat <<_EOC_
load_module $NGINX_MODULES/ndk_http_module.so;
load_module $NGINX_MODULES/ngx_http_lua_module.so;
$( [ "$(id -u)" -eq 0 ] && echo "user nobody nogroup;" )
worker_processes 1;
$( [ "$BENCH_PIN" = 1 ] && echo "worker_cpu_affinity $(cpu_mask "$SERVER_CPU");" )
daemon on;
master_process on;
pid logs/nginx.pid;
error_log logs/error.log warn;
events { worker_connections 4096; }
_EOC_
}

# lua_http_preamble: package paths to the project's Lua and library.
lua_http_preamble() {
    cat <<_EOC_
    access_log off;
    lua_package_path "$BENCH_ROOT/lua/?.lua;/usr/share/lua/5.1/?.lua;;";
    lua_package_cpath "$BENCH_ROOT/build/?.so;;";
_EOC_
}

# start_nginx DIR: start nginx with DIR/conf/nginx.conf; stop_nginx DIR.
start_nginx() {
    mkdir -p "$1/logs"
    chmod 755 "$1" "$1/logs"
    "$NGINX" -p "$1/" -c conf/nginx.conf
    sleep 0.5
}
stop_nginx() {
    [ -f "$1/logs/nginx.pid" ] && "$NGINX" -p "$1/" -c conf/nginx.conf -s stop 2>/dev/null
    sleep 0.5
}

# wrk_run URL SECONDS -> "rps p99_ms"
wrk_run() {
    local out
    out=$(on_client_cpu wrk -t1 -c"$BENCH_CONNS" -d"${2}s" --latency "$1")
    local rps p99
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
    local errs
    errs=$(echo "$out" | awk '/Non-2xx|Socket errors/ {print}')
    if [ -n "$errs" ]; then
        echo "bench: $1: $errs" >&2
    fi
    echo "$rps $(to_ms "$p99")"
}

# to_ms 1.23ms|456.00us|1.2s -> milliseconds
to_ms() {
    case "$1" in
        *us) awk -v v="${1%us}" 'BEGIN {printf "%.2f", v / 1000}' ;;
        *ms) awk -v v="${1%ms}" 'BEGIN {printf "%.2f", v}' ;;
        *s)  awk -v v="${1%s}" 'BEGIN {printf "%.2f", v * 1000}' ;;
        *)   echo "$1" ;;
    esac
}

# median of the arguments
median() {
    printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b > 0) ? a / b : 0}'; }

# round_ratios A B: the ratio of variant A to variant B in each round, as
# measured side by side ("0.71 0.78 ..."), from bench_variants' rounds.
round_ratios() {
    local -a a b
    read -r -a a <<<"${BENCH_ROUNDS_RPS[$1]}"
    read -r -a b <<<"${BENCH_ROUNDS_RPS[$2]}"
    local i out=""
    for i in "${!a[@]}"; do out+="$(ratio "${a[$i]}" "${b[$i]}") "; done
    echo "${out% }"
}

# bench_variants NAME=URL ...: runs the rounds, sets RPS_<NAME> and P99_<NAME>
# to the medians.
bench_variants() {
    local spec name url
    declare -gA BENCH_RPS BENCH_P99 BENCH_ROUNDS_RPS
    declare -A rps_all p99_all
    for spec in "$@"; do
        url=${spec#*=}
        wrk_run "$url" "$BENCH_WARMUP" >/dev/null
    done
    for ((round = 1; round <= BENCH_ROUNDS; round++)); do
        for spec in "$@"; do
            name=${spec%%=*}
            url=${spec#*=}
            read -r r p < <(wrk_run "$url" "$BENCH_SECONDS")
            rps_all[$name]+="$r "
            p99_all[$name]+="$p "
            echo "bench: round $round $name: $r req/s, p99 $p ms" >&2
        done
    done
    for spec in "$@"; do
        name=${spec%%=*}
        # shellcheck disable=SC2086
        BENCH_RPS[$name]=$(median ${rps_all[$name]})
        # shellcheck disable=SC2086
        BENCH_P99[$name]=$(median ${p99_all[$name]})
        BENCH_ROUNDS_RPS[$name]=${rps_all[$name]% }
    done
}
