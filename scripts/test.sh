#!/usr/bin/env bash
# Runs every test of Tollgate on this machine.
#
# It installs redis-server (Debian's package) when it is missing, then runs
# go vet and go test -race over the whole module, then fuzzes the input
# parsers (HTTP bodies, the config file, token files) and the RLS request
# path briefly (TOLLGATE_FUZZTIME each, default 5s; 0 skips; about a minute
# in all with a cold build cache, 25 s with a warm one). Tests that need Redis
# start their own real servers through internal/testcluster, from TestMain:
# a 6-node Cluster (3 masters, 3 replicas, one loopback address per node,
# 127.0.0.11-16) plus a standalone node, each on free ports, and stop them
# (and remove their data) when the package's tests end, pass or fail.
# Then it installs Debian's nodejs and npm when node is missing and runs the
# Node.js client's tests (clients/node: npm ci && npm test, against a real
# tollgate serve and the local Cluster; TOLLGATE_NODE_TESTS=0 skips them).
# Exits with the tests' status.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null 2>&1; then
	echo "test.sh: redis-server missing; installing Debian's redis-server" >&2
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server redis-tools >/dev/null
fi
if ! command -v go >/dev/null 2>&1; then
	echo "test.sh: Go is not installed (Tollgate needs Go $(sed -n 's/^go //p' go.mod))" >&2
	exit 1
fi
echo "test.sh: $(go version), $(redis-server --version | cut -d' ' -f1-3)"

unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
	echo "test.sh: gofmt needed: $unformatted" >&2
	exit 1
fi
go vet ./...
# -p 2: the machines have 2 cores; Redis servers share them with the tests.
go test -race -count=1 -p 2 -timeout 12m $(go list ./... | grep -v /internal/chaos) "$@"
# The chaos suite alone: its recovery bounds are timings of a real Cluster,
# which other packages' tests on the same two cores would skew.
go test -race -count=1 -timeout 8m ./internal/chaos "$@"

# A short fuzz pass: seeds plus a few seconds of mutation per target, so a
# parser that starts to panic or accept garbage fails CI. A failing input is
# saved under the package's testdata/fuzz/ to reproduce with go test.
fuzztime="${TOLLGATE_FUZZTIME:-5s}"
if [ "$fuzztime" != "0" ] && [ "$fuzztime" != "0s" ]; then
	go test -run '^$' -fuzz '^FuzzConsume$' -fuzztime "$fuzztime" ./server/httpapi
	go test -run '^$' -fuzz '^FuzzParse$' -fuzztime "$fuzztime" ./config
	go test -run '^$' -fuzz '^FuzzTokens$' -fuzztime "$fuzztime" ./internal/service
	go test -run '^$' -fuzz '^FuzzShouldRateLimit$' -fuzztime "$fuzztime" ./server/rls
fi

# The Node.js client (clients/node), against a real tollgate serve.
if [ "${TOLLGATE_NODE_TESTS:-1}" != "0" ]; then
	if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
		echo "test.sh: node or npm missing; installing Debian's nodejs and npm" >&2
		sudo=""
		[ "$(id -u)" -eq 0 ] || sudo="sudo"
		$sudo apt-get update -qq
		DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nodejs npm >/dev/null
	fi
	echo "test.sh: node $(node --version), npm $(npm --version)"
	(cd clients/node && npm ci --no-audit --no-fund && npm test)
fi
