#!/usr/bin/env bash
# Starts or stops the Redis Cluster that BENCHMARKS.md's `tollgate-lab bench`
# runs use: 3 masters and 3 replicas (one per master), one loopback address
# per node (127.0.0.11-16), all on port ${BENCH_PORT:-7400}, no persistence,
# as internal/testcluster configures its nodes.
#
#   scripts/bench-cluster.sh start   # prints the seed address when ready
#   scripts/bench-cluster.sh stop    # stops the nodes, removes their data
#   scripts/bench-cluster.sh callgrind SCRIPT.lua N ARGV...
#       # instructions per EVALSHA of SCRIPT (3 keys: …:s …:d …:l3600000000,
#       # each {tag}:__rand_int__ of 1,000, then ARGV) in a standalone
#       # redis-server under valgrind's callgrind, from runs of N and 3N calls
#       # (8 clients, pipelined 16 deep): a figure that other load on the
#       # machine does not move. Needs valgrind.
#
# The nodes' files live in ${BENCH_DIR:-/tmp/tollgate-bench-cluster}.
set -euo pipefail
port=${BENCH_PORT:-7400}
dir=${BENCH_DIR:-/tmp/tollgate-bench-cluster}
hosts=(127.0.0.11 127.0.0.12 127.0.0.13 127.0.0.14 127.0.0.15 127.0.0.16)

stop() {
	for h in "${hosts[@]}"; do
		if [ -f "$dir/$h/pid" ]; then
			kill "$(cat "$dir/$h/pid")" 2>/dev/null || true
		fi
	done
	sleep 0.5
	rm -rf "$dir"
}

start() {
	if [ -d "$dir" ]; then
		echo "bench-cluster: $dir exists: stop the running cluster first" >&2
		exit 1
	fi
	for h in "${hosts[@]}"; do
		mkdir -p "$dir/$h"
		cat >"$dir/$h/redis.conf" <<CONF
port $port
bind $h
bind-source-addr $h
protected-mode no
daemonize yes
pidfile $dir/$h/pid
dir $dir/$h
logfile $dir/$h/redis.log
save ""
appendonly no
repl-diskless-sync-delay 0
shutdown-timeout 0
cluster-enabled yes
cluster-config-file $dir/$h/nodes.conf
cluster-announce-ip $h
cluster-node-timeout 5000
cluster-require-full-coverage no
CONF
		redis-server "$dir/$h/redis.conf"
	done
	for h in "${hosts[@]}"; do
		for _ in $(seq 50); do
			redis-cli -h "$h" -p "$port" ping >/dev/null 2>&1 && break
			sleep 0.1
		done
	done
	redis-cli --cluster create $(for h in "${hosts[@]}"; do printf '%s:%s ' "$h" "$port"; done) \
		--cluster-replicas 1 --cluster-yes >"$dir/create.log"
	for _ in $(seq 100); do
		ok=1
		for h in "${hosts[@]}"; do
			redis-cli -h "$h" -p "$port" cluster info | grep -q 'cluster_state:ok' || ok=0
		done
		[ "$ok" = 1 ] && break
		sleep 0.1
	done
	if [ "$ok" != 1 ]; then
		echo "bench-cluster: the cluster did not become ready; see $dir" >&2
		exit 1
	fi
	echo "${hosts[0]}:$port"
}

# callgrind SCRIPT N ARGV...: see the header.
callgrind() {
	local lua=$1 n=$2
	shift 2
	local host=127.0.0.21 cport=${BENCH_CALLGRIND_PORT:-7480} out
	out=$(mktemp -d)
	run() {
		local calls=$1
		shift
		valgrind --tool=callgrind --callgrind-out-file="$out/cg.%p" redis-server --port "$cport" --bind $host --save "" --appendonly no >/dev/null 2>&1 &
		local vpid=$!
		for _ in $(seq 100); do
			redis-cli -h $host -p "$cport" ping >/dev/null 2>&1 && break
			sleep 0.2
		done
		local sha
		sha=$(redis-cli -h $host -p "$cport" script load "$(cat "$lua")")
		redis-benchmark -h $host -p "$cport" -n "$calls" -c 8 -r 1000 -P 16 EVALSHA "$sha" 3 \
			"k{tag}:__rand_int__:s" "k{tag}:__rand_int__:d" "k{tag}:__rand_int__:l3600000000" "$@" >/dev/null 2>&1
		redis-cli -h $host -p "$cport" shutdown nosave >/dev/null 2>&1 || true
		wait $vpid || true
		awk '/^(summary|totals):/{print $2; exit}' "$out"/cg.*
		rm -f "$out"/cg.*
	}
	local a b
	a=$(run "$n" "$@")
	b=$(run $((3 * n)) "$@")
	rmdir "$out"
	echo "$(basename "$lua"): $(((b - a) / (2 * n))) instructions per call"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
callgrind)
	shift
	callgrind "$@"
	;;
*)
	echo "usage: $0 start|stop|callgrind SCRIPT N ARGV..." >&2
	exit 2
	;;
esac
