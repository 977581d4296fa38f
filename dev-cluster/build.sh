#!/usr/bin/env bash
# Builds Nomad v1.6.1 and Consul v1.14.8 (their last MPL-2.0 releases) from the
# Go module proxy into a cache outside git, and reuses them when present.
#
#   FLEETPLAN_CACHE  cache folder (default: ~/.cache/fleetplan)
#
# Prints nothing but progress on stderr; exits non-zero when a build fails.
set -euo pipefail

CACHE="${FLEETPLAN_CACHE:-$HOME/.cache/fleetplan}"
BIN="$CACHE/bin"
mkdir -p "$BIN" "$CACHE/src"

# One build at a time per cache: a second caller waits, then finds the
# binaries cached.
exec 9>"$CACHE/.build.lock"
flock 9

NOMAD_VERSION=1.6.1
NOMAD_API=v0.0.0-20230721134942-515895c7690c
CONSUL_VERSION=1.14.8
CONSUL_API=v1.18.1

log() { echo "==> $*" >&2; }

# fetch MODULE VERSION DEST: copies the module's source to a writable folder.
fetch() {
	local mod="$1" ver="$2" dest="$3"
	local dir
	dir="$(cd /tmp && GOFLAGS=-mod=mod go mod download -json "$mod@$ver" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
	rm -rf "$dest"
	cp -r "$dir" "$dest"
	chmod -R u+w "$dest"
}

build_consul() {
	local out="$BIN/consul-$CONSUL_VERSION"
	if [[ -x "$out" ]] && "$out" version >/dev/null 2>&1; then
		log "consul $CONSUL_VERSION: cached at $out"
		return
	fi
	log "consul $CONSUL_VERSION: building from the module proxy (a few minutes)"
	local src="$CACHE/src/consul"
	fetch github.com/hashicorp/consul "v$CONSUL_VERSION" "$src"
	(
		cd "$src"
		go mod edit -dropreplace=github.com/hashicorp/consul/api \
			-dropreplace=github.com/hashicorp/consul/sdk \
			-dropreplace=github.com/hashicorp/consul/proto-public
		go mod edit -require="github.com/hashicorp/consul/api@$CONSUL_API"
		CGO_ENABLED=0 GOFLAGS=-mod=mod go build -o "$out.tmp" .
	)
	mv "$out.tmp" "$out"
	rm -rf "$src"
	log "consul $CONSUL_VERSION: built $out"
}

build_nomad() {
	local out="$BIN/nomad-$NOMAD_VERSION"
	if [[ -x "$out" ]] && "$out" version >/dev/null 2>&1; then
		log "nomad $NOMAD_VERSION: cached at $out"
		return
	fi
	log "nomad $NOMAD_VERSION: building from the module proxy (a few minutes)"
	local src="$CACHE/src/nomad"
	fetch github.com/hashicorp/nomad "v$NOMAD_VERSION" "$src"
	(
		cd "$src"
		go mod edit -dropreplace=github.com/hashicorp/nomad/api
		go mod edit -require="github.com/hashicorp/nomad/api@$NOMAD_API"
		CGO_ENABLED=1 GOFLAGS=-mod=mod go build -o "$out.tmp" .
	)
	mv "$out.tmp" "$out"
	rm -rf "$src"
	log "nomad $NOMAD_VERSION: built $out"
}

build_consul
build_nomad
ln -sf "consul-$CONSUL_VERSION" "$BIN/consul"
ln -sf "nomad-$NOMAD_VERSION" "$BIN/nomad"
