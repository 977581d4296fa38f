#!/usr/bin/env bash
# The fleetplan dev cluster: a real Consul server and Nomad server on
# 127.0.0.1 and N simulated edge devices on 127.0.0.2, 127.0.0.3, ... each a
# Nomad client with its own Consul client agent.
#
# usage: dev-cluster/cluster.sh COMMAND [ARGS]
#
#   up [N]             start the cluster (default N=6 devices, up to 12), idempotent
#   down               stop every agent and remove all state
#   status             print the cluster's state (exit 1 when it is not running)
#   device-down NAME   stop a device's Nomad client and Consul agent
#   device-up NAME     start them again with the same identity
#   device-freeze NAME freeze a device's Nomad client and Consul agent (SIGSTOP)
#   device-thaw NAME   resume them (SIGCONT)
#   server-restart nomad|consul
#                      restart a server with the same data dir (state kept)
#   devices            list device names, one per line
#   env                print the environment variables that reach the cluster
#
# Environment:
#   FLEETPLAN_DEV_DIR     state folder (default: <repo>/.dev-cluster)
#   FLEETPLAN_CACHE       binary cache (default: ~/.cache/fleetplan)
#   FLEETPLAN_DEVICES     device count for `up` (default 6)
#   ACL                   ACL=1 `up` starts the cluster with ACLs on Nomad and
#                         Consul (default deny), the bootstrap tokens and the
#                         least-privilege fleetplan tokens of acl/ in
#                         STATE/acl/*.token (mode 0600); `up` restarts a running
#                         cluster whose mode differs (plain `up` after an ACL
#                         cluster gives a plain cluster again)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
STATE="${FLEETPLAN_DEV_DIR:-$REPO/.dev-cluster}"
CACHE="${FLEETPLAN_CACHE:-$HOME/.cache/fleetplan}"
NOMAD="$CACHE/bin/nomad"
CONSUL="$CACHE/bin/consul"
CLASSES=(jetson rpi gateway)
MAX_DEVICES=12
ACLPY="$HERE/acl.py"
# The requested mode of `up`: acl or plain.
MODE=plain
if [[ "${ACL:-0}" != "0" && -n "${ACL:-}" ]]; then MODE=acl; fi

export NOMAD_ADDR=http://127.0.0.1:4646
export CONSUL_HTTP_ADDR=127.0.0.1:8500
unset NOMAD_TOKEN CONSUL_HTTP_TOKEN NOMAD_CACERT NOMAD_CLIENT_CERT NOMAD_CLIENT_KEY CONSUL_CACERT CONSUL_CLIENT_CERT CONSUL_CLIENT_KEY CONSUL_HTTP_SSL

log() { echo "==> $*" >&2; }

# http_get URL: prints the body, fails on errors (no curl on a fresh machine).
# On an ACL cluster it sends the bootstrap tokens (read from their files).
http_get() {
	python3 "$ACLPY" get "$STATE" "$1" 2>/dev/null
}

# running_mode: the mode of the cluster set up in STATE (acl or plain).
running_mode() {
	if [[ -f "$STATE/mode" ]]; then cat "$STATE/mode"; else echo plain; fi
}

# acl_block ROLE: the acl block of an agent's config in ACL mode (empty
# otherwise); a Consul agent's own token is read from its file.
consul_acl_block() {
	local node=$1
	[[ "$MODE" == acl ]] || return 0
	cat <<HCL
acl {
  enabled                  = true
  default_policy           = "deny"
  down_policy              = "extend-cache"
  enable_token_persistence = true
HCL
	if [[ -n "$node" ]]; then
		echo "  tokens {"
		echo "    agent = \"$(python3 "$ACLPY" token "$STATE" "consul-agent.$node")\""
		echo "  }"
	fi
	echo "}"
}

# nomad_acl_lines: Nomad's acl block and its Consul token in ACL mode.
nomad_consul_block() {
	echo "consul {"
	echo "  address = \"$1\""
	if [[ "$MODE" == acl ]]; then
		echo "  token   = \"$(python3 "$ACLPY" token "$STATE" nomad-agents.consul)\""
	fi
	echo "}"
	if [[ "$MODE" == acl ]]; then
		printf 'acl {\n  enabled = true\n}\n'
	fi
}

# kill_matching PATTERN: kills the processes whose command line, working
# folder or open files contain PATTERN (Nomad's logmon and executor
# processes outlive a stopped client and only show it in their open files;
# there is no procps on a fresh machine).
kill_matching() {
	local pat=$1 p pid cwd
	for p in /proc/[0-9]*; do
		pid=${p#/proc/}
		[[ "$pid" == "$$" ]] && continue
		cwd=$(readlink "$p/cwd" 2>/dev/null || true)
		if [[ "$cwd/" == *"$pat"* ]] ||
			{ tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -qF -- "$pat"; } ||
			{ find "$p/fd" -maxdepth 1 -type l -lname "$pat*" 2>/dev/null | grep -q .; }; then
			kill -KILL "$pid" 2>/dev/null || true
		fi
	done
}

die() { echo "error: $*" >&2; exit 1; }

# device_name I: the name of the I-th device (0-based), classes round-robin.
device_name() {
	local i=$1
	echo "${CLASSES[$((i % 3))]}-$((i / 3 + 1))"
}

device_index() {
	local name=$1 n i
	n=$(device_count)
	for ((i = 0; i < n; i++)); do
		if [[ "$(device_name "$i")" == "$name" ]]; then
			echo "$i"
			return
		fi
	done
	die "no device named $name (devices: $(devices | tr '\n' ' '))"
}

device_count() {
	if [[ -f "$STATE/devices" ]]; then cat "$STATE/devices"; else echo "${FLEETPLAN_DEVICES:-6}"; fi
}

devices() {
	local n i
	n=$(device_count)
	for ((i = 0; i < n; i++)); do device_name "$i"; done
}

# Hardware descriptions per class: model accelerator mem_mb
hw() {
	case "$1" in
	jetson) echo "jetson-orin-nano cuda 8192" ;;
	rpi) echo "raspberry-pi-5 none 4096" ;;
	gateway) echo "dell-edge-3200 none 16384" ;;
	esac
}

pidfile_alive() {
	local f=$1
	[[ -f "$f" ]] && kill -0 "$(cat "$f")" 2>/dev/null
}

# start_bg NAME LOG CMD...: starts an agent in the background, records its pid.
start_bg() {
	local pidf=$1 logf=$2
	shift 2
	if pidfile_alive "$pidf"; then return; fi
	# setsid: the agents outlive this script, in their own session, so a
	# terminal's Ctrl-C does not reach them. They get no descriptor of ours
	# beyond stdio: one inherited from a caller (a `flock FILE cluster.sh
	# up` holds its lock on one) would stay open for the agents' lifetime.
	(
		for fd in /proc/self/fd/*; do
			fd=${fd##*/}
			if [[ $fd -gt 2 ]]; then eval "exec $fd>&-" 2>/dev/null || true; fi
		done
		exec setsid "$@" >>"$logf" 2>&1 </dev/null
	) &
	echo $! >"$pidf"
}

stop_pidfile() { # stop_pidfile FILE [SIGNAL]
	local f=$1 sig=${2:-INT} pid i
	[[ -f "$f" ]] || return 0
	pid=$(cat "$f")
	if kill -0 "$pid" 2>/dev/null; then
		kill "-$sig" "$pid" 2>/dev/null || true
		for ((i = 0; i < 100; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$f"
}

wait_for() { # wait_for DESCRIPTION TIMEOUT_S CMD...
	local what=$1 timeout=$2 i
	shift 2
	for ((i = 0; i < timeout * 5; i++)); do
		if "$@" >/dev/null 2>&1; then return 0; fi
		sleep 0.2
	done
	die "timed out after ${timeout}s waiting for $what (logs in $STATE)"
}

# check_update_interval: Consul's default (5 min: a check's output change
# without a status change reaches the servers up to 5 min later), as on a
# real fleet. fleetplan does not depend on fresh outputs: statuses carry
# the verdicts, its checks start as warnings so that their first result is
# a status change, and the numbers travel in the device summaries.
# CONSUL_CHECK_UPDATE_INTERVAL=0s (any duration) overrides it, e.g. to watch
# outputs change live in the Consul UI.
check_update_interval() {
	if [[ -n "${CONSUL_CHECK_UPDATE_INTERVAL:-}" ]]; then
		echo "check_update_interval = \"${CONSUL_CHECK_UPDATE_INTERVAL}\""
	fi
}

write_server_configs() {
	mkdir -p "$STATE/server/consul" "$STATE/server/nomad"
	cat >"$STATE/server/consul.hcl" <<HCL
datacenter            = "dc1"
node_name             = "fleetplan-server"
data_dir              = "$STATE/server/consul"
bind_addr             = "127.0.0.1"
client_addr           = "127.0.0.1"
server                = true
bootstrap_expect      = 1
$(check_update_interval)
log_level             = "INFO"
ui_config { enabled = true }
ports {
  dns  = -1
  grpc = -1
}
performance { raft_multiplier = 1 }
$(consul_acl_block "")
HCL
	chmod 600 "$STATE/server/consul.hcl"
}

write_nomad_server_config() {
	mkdir -p "$STATE/server/nomad"
	cat >"$STATE/server/nomad.hcl" <<HCL
datacenter            = "dc1"
name                  = "fleetplan-server"
data_dir              = "$STATE/server/nomad"
bind_addr             = "127.0.0.1"
log_level             = "INFO"
disable_update_check  = true
advertise {
  http = "127.0.0.1"
  rpc  = "127.0.0.1"
  serf = "127.0.0.1"
}
server {
  enabled           = true
  bootstrap_expect  = 1
  # Detect a device that went away within ~10 s rather than the default ~20 s.
  min_heartbeat_ttl = "5s"
  heartbeat_grace   = "5s"
}
# make scale's simulated devices (dev-cluster/nodesim) all connect from 127.0.0.1.
limits { rpc_max_conns_per_client = 4096 }
$(nomad_consul_block 127.0.0.1:8500)
HCL
	chmod 600 "$STATE/server/nomad.hcl"
}

write_device_configs() {
	local i=$1 name class ip model accel mem
	name=$(device_name "$i")
	class=${CLASSES[$((i % 3))]}
	ip="127.0.0.$((i + 2))"
	read -r model accel mem <<<"$(hw "$class")"
	mkdir -p "$STATE/$name/consul" "$STATE/$name/nomad"
	cat >"$STATE/$name/consul.hcl" <<HCL
datacenter            = "dc1"
node_name             = "$name"
data_dir              = "$STATE/$name/consul"
bind_addr             = "$ip"
client_addr           = "$ip"
retry_join            = ["127.0.0.1"]
$(check_update_interval)
log_level             = "INFO"
node_meta {
  class = "$class"
}
ports {
  dns  = -1
  grpc = -1
}
$(consul_acl_block "$name")
HCL
	chmod 600 "$STATE/$name/consul.hcl"
	cat >"$STATE/$name/nomad.hcl" <<HCL
datacenter           = "dc1"
name                 = "$name"
data_dir             = "$STATE/$name/nomad"
bind_addr            = "$ip"
log_level            = "INFO"
disable_update_check = true
advertise {
  http = "$ip"
  rpc  = "$ip"
  serf = "$ip"
}
client {
  enabled           = true
  servers           = ["127.0.0.1:4647"]
  node_class        = "$class"
  network_interface = "lo"
  cgroup_parent     = "fleetplan-$name"
  # Every device shares the loopback interface: give each its own port range.
  min_dynamic_port  = $((20000 + i * 1000))
  max_dynamic_port  = $((20999 + i * 1000))
  gc_interval       = "10s"
  meta {
    "fleet"          = "vision"
    "hw.model"       = "$model"
    "hw.accelerator" = "$accel"
    "hw.mem_mb"      = "$mem"
    "edge.bin_dir"   = "$STATE/bin"
    # The device's own agents, for the fleetplan device agent's job.
    "consul.http_addr" = "$ip:8500"
    "nomad.http_addr"  = "http://$ip:4646"
  }
}
plugin "raw_exec" {
  config {
    enabled = true
  }
}
$(nomad_consul_block "$ip:8500")
HCL
	chmod 600 "$STATE/$name/nomad.hcl"
}

start_device() {
	local i=$1 name
	name=$(device_name "$i")
	start_bg "$STATE/$name/consul.pid" "$STATE/$name/consul.log" "$CONSUL" agent -config-file "$STATE/$name/consul.hcl"
	start_bg "$STATE/$name/nomad.pid" "$STATE/$name/nomad.log" "$NOMAD" agent -config "$STATE/$name/nomad.hcl"
}

node_ready() { # node_ready NAME
	http_get "$NOMAD_ADDR/v1/nodes" | python3 -c '
import json, sys
name = sys.argv[1]
nodes = [n for n in json.load(sys.stdin) if n["Name"] == name]
sys.exit(0 if nodes and nodes[0]["Status"] == "ready" else 1)' "$1"
}

node_status() { # node_status NAME: Nomad's status of a node, or "unknown"
	http_get "$NOMAD_ADDR/v1/nodes" | python3 -c '
import json, sys
name = sys.argv[1]
nodes = [n for n in json.load(sys.stdin) if n["Name"] == name]
print(nodes[0]["Status"] if nodes else "unknown")' "$1"
}

# all_ready: every device is a ready Nomad node whose client has fingerprinted
# its Consul agent (jobs with services are not placed before that).
all_ready() {
	python3 - "$NOMAD_ADDR" "$STATE" $(devices) <<'PY'
import json, os, sys, urllib.request
addr, state, want = sys.argv[1], sys.argv[2], set(sys.argv[3:])
hdrs = {}
if os.path.exists(os.path.join(state, "acl", "nomad.bootstrap.token")):
    hdrs["X-Nomad-Token"] = open(os.path.join(state, "acl", "nomad.bootstrap.token")).read().strip()
get = lambda p: json.load(urllib.request.urlopen(urllib.request.Request(addr + p, headers=hdrs), timeout=5))
ready = set()
for n in get("/v1/nodes"):
    if n["Name"] in want and n["Status"] == "ready":
        if "consul.version" in get("/v1/node/" + n["ID"]).get("Attributes", {}):
            ready.add(n["Name"])
sys.exit(0 if want <= ready else 1)
PY
}

all_alive() {
	http_get "http://$CONSUL_HTTP_ADDR/v1/agent/members" | python3 -c '
import json, sys
want = set(sys.argv[1:]) | {"fleetplan-server"}
alive = {m["Name"] for m in json.load(sys.stdin) if m["Status"] == 1}
sys.exit(0 if want <= alive else 1)' $(devices)
}

install_demo_app() {
	mkdir -p "$STATE/bin"
	log "building the demo application (edgeinfer) into $STATE/bin"
	(cd "$REPO" && go build -o "$STATE/bin/edgeinfer.tmp" ./dev-cluster/edgeinfer && mv "$STATE/bin/edgeinfer.tmp" "$STATE/bin/edgeinfer")
	# The device agent (fleetplan agent install) runs ${meta.edge.bin_dir}/fleetplan.
	log "building fleetplan (for the device agent) into $STATE/bin"
	(cd "$REPO" && go build -o "$STATE/bin/fleetplan.tmp" . && mv "$STATE/bin/fleetplan.tmp" "$STATE/bin/fleetplan")
}

cmd_up() {
	local n=${1:-$(device_count)} i
	[[ "$n" =~ ^[0-9]+$ ]] && ((n >= 1 && n <= MAX_DEVICES)) || die "device count must be 1..$MAX_DEVICES, got $n"
	# The ports are fixed: a cluster of the other mode is replaced.
	if [[ -f "$STATE/devices" && "$(running_mode)" != "$MODE" ]]; then
		log "the dev cluster in $STATE runs in $(running_mode) mode; restarting it in $MODE mode"
		cmd_down
	fi
	if [[ -f "$STATE/devices" && "$(cat "$STATE/devices")" != "$n" ]]; then
		die "a cluster with $(cat "$STATE/devices") devices is already set up in $STATE; run '$0 down' first"
	fi
	"$HERE/build.sh"
	mkdir -p "$STATE"
	echo "$n" >"$STATE/devices"
	echo "$MODE" >"$STATE/mode"
	install_demo_app

	write_server_configs
	start_bg "$STATE/server/consul.pid" "$STATE/server/consul.log" "$CONSUL" agent -config-file "$STATE/server/consul.hcl"
	wait_for "the Consul server's leader" 60 sh -c "python3 -c 'import urllib.request,sys; sys.exit(0 if b\":8300\" in urllib.request.urlopen(\"http://$CONSUL_HTTP_ADDR/v1/status/leader\", timeout=2).read() else 1)'"
	if [[ "$MODE" == acl ]]; then
		log "bootstrapping Consul's ACLs (tokens in $STATE/acl, mode 0600)"
		python3 "$ACLPY" consul "$STATE" "$REPO" $(devices)
	fi
	write_nomad_server_config
	start_bg "$STATE/server/nomad.pid" "$STATE/server/nomad.log" "$NOMAD" agent -config "$STATE/server/nomad.hcl"
	wait_for "the Nomad server's leader" 60 sh -c "python3 -c 'import urllib.request,sys; sys.exit(0 if b\":4647\" in urllib.request.urlopen(\"$NOMAD_ADDR/v1/status/leader\", timeout=2).read() else 1)'"
	if [[ "$MODE" == acl ]]; then
		log "bootstrapping Nomad's ACLs"
		python3 "$ACLPY" nomad "$STATE" "$REPO"
	fi

	for ((i = 0; i < n; i++)); do
		write_device_configs "$i"
		start_device "$i"
	done
	log "waiting for $n devices to be ready in Nomad and alive in Consul"
	wait_for "every Nomad node to be ready" 120 all_ready
	wait_for "every Consul member to be alive" 60 all_alive
	cmd_status
	if [[ "$MODE" == acl ]]; then acl_usage; fi
}

# acl_usage: how to use the tokens (read from their files, never printed).
acl_usage() {
	local d="$STATE/acl"
	cat <<EOF
  ACLs are on (Nomad and Consul, default deny). Tokens (mode 0600) in $d:
    nomad.bootstrap.token, consul.bootstrap.token   management: set-up only
    controller.{nomad,consul}.token   fleetplan apply / rollback / catch-up / controller
    operator.{nomad,consul}.token     status, report, audit, approve, pause, resume, rollback
    agent.{nomad,consul}.token        the device agent (Nomad Variable nomad/jobs/fleetplan-agent)
  Run fleetplan as the controller:
    export NOMAD_TOKEN=\$(cat $d/controller.nomad.token)
    export CONSUL_HTTP_TOKEN=\$(cat $d/controller.consul.token)
  as an operator:
    export NOMAD_TOKEN=\$(cat $d/operator.nomad.token)
    export CONSUL_HTTP_TOKEN=\$(cat $d/operator.consul.token)
  Install the device agent (its tokens come from the Nomad Variable; needs submit-job):
    NOMAD_TOKEN=\$(cat $d/nomad.bootstrap.token) bin/fleetplan agent install -token-from-variable -default-system cpu=off
EOF
}

cmd_down() {
	local d f pid pids=() i
	if [[ -d "$STATE" ]]; then
		# Ask every agent to stop at once, then give them 10 s in all.
		for f in "$STATE"/*/nomad.pid "$STATE"/*/consul.pid; do
			[[ -f "$f" ]] || continue
			pid=$(cat "$f")
			if kill -0 "$pid" 2>/dev/null; then
				kill -INT "$pid" 2>/dev/null || true
				pids+=("$pid")
			fi
			rm -f "$f"
		done
		for ((i = 0; i < 100; i++)); do
			local alive=0
			for pid in "${pids[@]}"; do
				if kill -0 "$pid" 2>/dev/null; then alive=1; fi
			done
			((alive)) || break
			sleep 0.1
		done
		for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
	fi
	# Tasks started by raw_exec run the demo binary from the state folder.
	kill_matching "$STATE/"
	# Nomad leaves cgroups behind on cgroup v1.
	for d in /sys/fs/cgroup/*/fleetplan-*; do
		if [[ -d "$d" ]]; then find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true; fi
	done
	# Data dirs may hold mounts made by Nomad's clients (secrets dirs).
	if [[ -d "$STATE" ]]; then
		{ grep -o " $STATE[^ ]*" /proc/mounts || true; } | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
		rm -rf "$STATE"
	fi
	log "dev cluster stopped"
}

cmd_status() {
	[[ -f "$STATE/devices" ]] || { echo "dev cluster: not set up ($STATE)"; return 1; }
	pidfile_alive "$STATE/server/nomad.pid" && pidfile_alive "$STATE/server/consul.pid" || { echo "dev cluster: servers not running"; return 1; }
	echo "dev cluster ($STATE, $(running_mode) mode):"
	echo "  Nomad       http://127.0.0.1:4646  (API only: this Nomad is built without its web UI; follow rollouts with \`fleetplan status -watch\`)"
	echo "  Consul      http://127.0.0.1:8500  (UI: http://127.0.0.1:8500/ui)"
	echo "  devices:"
	http_get "$NOMAD_ADDR/v1/nodes" | python3 -c '
import json, sys
for n in sorted(json.load(sys.stdin), key=lambda n: n["Name"]):
    print("    %-12s %-8s %-8s %s" % (n["Name"], n["NodeClass"], n["Status"], n["Address"]))'
}

cmd_device_down() {
	local name=${1:?device name}
	device_index "$name" >/dev/null
	# Like a power loss: no graceful leave, so Consul marks the node failed
	# (serfHealth critical) and Nomad misses its heartbeats (down).
	stop_pidfile "$STATE/$name/nomad.pid" KILL
	stop_pidfile "$STATE/$name/consul.pid" KILL
	# A powered-off device runs nothing: stop its tasks too.
	kill_matching "$STATE/$name/"
	log "$name is down (Nomad will mark it down after its heartbeat TTL)"
}

cmd_device_up() {
	local name=${1:?device name} i
	i=$(device_index "$name")
	start_device "$i"
	# The server may still list the node as ready from before: wait for the
	# restarted agents themselves, then for the server to agree.
	wait_for "$name's Nomad client" 60 http_get "http://127.0.0.$((i + 2)):4646/v1/agent/self"
	wait_for "$name's Consul agent" 60 http_get "http://127.0.0.$((i + 2)):8500/v1/agent/self"
	wait_for "$name to be ready" 60 node_ready "$name"
	wait_for "every Consul member to be alive" 60 all_alive
	log "$name is up ($(node_status "$name"))"
}

# signal_device NAME SIGNAL: signals a device's Nomad client and Consul
# agent (not its tasks).
signal_device() {
	local name=$1 sig=$2 f
	device_index "$name" >/dev/null
	for f in "$STATE/$name/nomad.pid" "$STATE/$name/consul.pid"; do
		[[ -f "$f" ]] || die "$name is not running ($f missing)"
		kill "-$sig" "$(cat "$f")" 2>/dev/null || die "$name: cannot send SIG$sig to $(cat "$f")"
	done
}

cmd_device_freeze() {
	local name=${1:?device name}
	# Like a hung device or a partition: the agents stop answering and
	# heartbeating, the tasks keep running.
	signal_device "$name" STOP
	log "$name is frozen (thaw it with: $0 device-thaw $name)"
}

cmd_device_thaw() {
	local name=${1:?device name}
	signal_device "$name" CONT
	log "$name is thawed"
}

cmd_server_restart() {
	local which=${1:?nomad or consul}
	case "$which" in
	consul)
		stop_pidfile "$STATE/server/consul.pid" INT
		start_bg "$STATE/server/consul.pid" "$STATE/server/consul.log" "$CONSUL" agent -config-file "$STATE/server/consul.hcl"
		wait_for "the Consul server's leader" 60 sh -c "python3 -c 'import urllib.request,sys; sys.exit(0 if b\":8300\" in urllib.request.urlopen(\"http://$CONSUL_HTTP_ADDR/v1/status/leader\", timeout=2).read() else 1)'"
		wait_for "every Consul member to be alive" 60 all_alive
		;;
	nomad)
		stop_pidfile "$STATE/server/nomad.pid" INT
		start_bg "$STATE/server/nomad.pid" "$STATE/server/nomad.log" "$NOMAD" agent -config "$STATE/server/nomad.hcl"
		wait_for "the Nomad server's leader" 60 sh -c "python3 -c 'import urllib.request,sys; sys.exit(0 if b\":4647\" in urllib.request.urlopen(\"$NOMAD_ADDR/v1/status/leader\", timeout=2).read() else 1)'"
		;;
	*) die "server-restart takes nomad or consul, got $which" ;;
	esac
	log "the $which server restarted (same data dir)"
}

cmd_env() {
	echo "export NOMAD_ADDR=$NOMAD_ADDR"
	echo "export CONSUL_HTTP_ADDR=$CONSUL_HTTP_ADDR"
	echo "export PATH=$CACHE/bin:\$PATH"
	if [[ "$(running_mode)" == acl ]]; then
		echo "export NOMAD_TOKEN=\$(cat $STATE/acl/controller.nomad.token)"
		echo "export CONSUL_HTTP_TOKEN=\$(cat $STATE/acl/controller.consul.token)"
	fi
}

case "${1:-}" in
up) shift; cmd_up "$@" ;;
down) cmd_down ;;
status) cmd_status ;;
device-down) shift; cmd_device_down "$@" ;;
device-up) shift; cmd_device_up "$@" ;;
device-freeze) shift; cmd_device_freeze "$@" ;;
device-thaw) shift; cmd_device_thaw "$@" ;;
server-restart) shift; cmd_server_restart "$@" ;;
devices) devices ;;
env) cmd_env ;;
*) sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
