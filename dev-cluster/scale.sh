#!/usr/bin/env bash
# make scale: fleetplan against N simulated devices on the dev cluster's real
# Nomad and Consul servers, then a table of what it cost.
#
#   1. builds the device simulator (dev-cluster/nodesim, its own Go module:
#      in-process Nomad 1.6.1 clients, cached in FLEETPLAN_CACHE/bin) and
#      bin/fleetplan; starts the dev cluster if it is not running;
#   2. starts N simulated devices (Nomad nodes that register and heartbeat
#      for real, Consul nodes through gossip, the app's Consul services and
#      checks registered by the simulator), node meta fleet=sim;
#   3. rolls "simapp" 1.0.0 out to them: canary 5 %, waves 10/25/50/100 %,
#      30 s soaks, auto-approve, max_parallel 500 (driver mock_driver);
#      devices the release skipped because they were offline (a simulated
#      node that missed its heartbeats) are caught up afterwards
#      (catch-up -wait), as an operator would before the next release;
#   4. rolls out 2.0.0, a bad release (its check goes critical on the
#      devices that start it after the first 30 % of the fleet): fleetplan
#      rolls it back by itself;
#   5. prints the table and stops everything it started: the simulated nodes
#      leave Consul and are purged from Nomad, the app's jobs, KV and registry
#      entries are removed, the dev cluster stays up and plain.
#
# fleetplan talks to the servers through a counting proxy (nodesim proxy),
# so its own requests are counted apart from the simulated clients' RPCs.
# The whole run holds the dev cluster's lock (FLEETPLAN_CLUSTER_LOCK).
#
# Environment:
#   SCALE_DEVICES       simulated devices (default 1000)
#   SCALE_SOAK          soak of every stage (default 30s)
#   SCALE_MAX_PARALLEL  max_parallel (default 500: a switch takes ~9 s, most of it
#                       the Nomad client batching its metadata update, so
#                       50 switches/s need ~450 in flight)
#   SCALE_ROLLOUT_TIMEOUT  seconds before a rollout is interrupted (default 1800)
#   SCALE_CATCHUP_TIMEOUT  seconds the catch-up after the release may wait for
#                       devices that were offline to come back (default 300)
#   SCALE_KEEP=1        keep the work folder (logs, JSON) after the run
#   FLEETPLAN_DEV_DIR, FLEETPLAN_CACHE: as for cluster.sh
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
CACHE="${FLEETPLAN_CACHE:-$HOME/.cache/fleetplan}"
LOCK="${FLEETPLAN_CLUSTER_LOCK:-/tmp/fleetplan-cluster.lock}"
N="${SCALE_DEVICES:-1000}"
SOAK="${SCALE_SOAK:-30s}"
MAXP="${SCALE_MAX_PARALLEL:-500}"
ROLLOUT_TIMEOUT="${SCALE_ROLLOUT_TIMEOUT:-1800}"
CATCHUP_TIMEOUT="${SCALE_CATCHUP_TIMEOUT:-300}"
APP=simapp
PREFIX=scale
NOMAD=http://127.0.0.1:4646
CONSUL=127.0.0.1:8500
PNOMAD=127.0.0.1:14646
PCONSUL=127.0.0.1:18500
SIM_STATUS=127.0.0.1:4700
PROXY_STATS=127.0.0.1:4701

log() { echo "==> $*" >&2; }
die() { echo "error: $*" >&2; exit 1; }

[[ "$N" =~ ^[0-9]+$ ]] && ((N >= 3)) || die "SCALE_DEVICES must be a number >= 3, got '$N'"
WORK="$(mktemp -d /tmp/fleetplan-scale.XXXXXX)"
log "work folder: $WORK (logs, JSON)"

# --- build -----------------------------------------------------------------

# The simulator is cached by the hash of its sources: one build per change
# (the first one compiles Nomad's client: several minutes on 2 cores).
build_nodesim() {
	local src="$HERE/nodesim" sum out
	sum="$(cat "$src"/go.mod "$src"/go.sum "$src"/*.go | sha256sum | cut -c1-12)"
	out="$CACHE/bin/nodesim-$sum"
	if [[ ! -x "$out" ]]; then
		log "building the device simulator (dev-cluster/nodesim, Nomad $(
			sed -n 's#^\s*github.com/hashicorp/nomad v\(.*\)#\1#p' "$src/go.mod"
		) client) into $out"
		mkdir -p "$CACHE/bin"
		(cd "$src" && CGO_ENABLED=1 GOFLAGS=-mod=mod go build -o "$out.tmp" . && mv "$out.tmp" "$out")
	fi
	NODESIM="$out"
}
build_nodesim
log "building bin/fleetplan"
(cd "$REPO" && mkdir -p bin && go build -o bin/fleetplan .)
FP="$REPO/bin/fleetplan"

# --- the lock, the cluster ---------------------------------------------------

exec 8>"$LOCK"
if ! flock -n 8; then
	log "waiting for the dev cluster's lock ($LOCK): another test or scale run uses it"
	flock 8
fi
# A dev cluster that answers is used as it is (whichever FLEETPLAN_DEV_DIR
# started it); otherwise cluster.sh starts one.
servers_up() {
	python3 - "$NOMAD" "$CONSUL" <<'PY'
import sys, urllib.request
try:
    for url in (sys.argv[1] + "/v1/status/leader", "http://" + sys.argv[2] + "/v1/status/leader"):
        if len(urllib.request.urlopen(url, timeout=3).read()) < 5:
            sys.exit(1)
except Exception:
    sys.exit(1)
PY
}
if ! servers_up; then
	log "starting the dev cluster"
	"$HERE/cluster.sh" up >/dev/null
fi
# Every simulated client connects to the Nomad server from 127.0.0.1, and
# Nomad accepts 100 RPC connections per client address by default: the dev
# cluster's server config (cluster.sh) raises it; a server started before
# that is restarted once (state kept).
rpc_limit() {
	python3 -c 'import json,sys,urllib.request; print(json.load(urllib.request.urlopen(sys.argv[1]+"/v1/agent/self",timeout=10))["config"]["Limits"]["RPCMaxConnsPerClient"])' "$NOMAD"
}
limit=$(rpc_limit)
if ((limit != 0 && limit < N + 50)); then
	STATE="${FLEETPLAN_DEV_DIR:-$REPO/.dev-cluster}"
	[[ -f "$STATE/server/nomad.pid" ]] && kill -0 "$(cat "$STATE/server/nomad.pid")" 2>/dev/null ||
		die "the Nomad server at $NOMAD accepts $limit RPC connections per client address, fewer than $N simulated devices need, and it is not the dev cluster of $STATE: set FLEETPLAN_DEV_DIR to the folder of the running dev cluster, or restart it with dev-cluster/cluster.sh (its config sets limits.rpc_max_conns_per_client)"
	log "the Nomad server accepts $limit RPC connections per client address: restarting it with the dev cluster's current config (state kept)"
	"$HERE/cluster.sh" up >/dev/null
	"$HERE/cluster.sh" server-restart nomad
	limit=$(rpc_limit)
	((limit == 0 || limit >= N + 50)) || die "the restarted Nomad server still accepts only $limit RPC connections per client address (see $STATE/server/nomad.hcl)"
fi

PIDS=()
# start NAME CMD...: a background process of this run, without the lock's
# descriptor.
start() {
	local name=$1
	shift
	"$@" >"$WORK/$name.log" 2>&1 8>&- &
	PIDS+=($!)
	eval "PID_$name=$!"
}

kv_delete() { # kv_delete KEY [recurse]
	python3 - "$CONSUL" "$@" <<'PY'
import sys, urllib.request
addr, key = sys.argv[1], sys.argv[2]
q = "?recurse=true" if len(sys.argv) > 3 else ""
urllib.request.urlopen(urllib.request.Request(f"http://{addr}/v1/kv/{key}{q}", method="DELETE"), timeout=10).read()
PY
}

# cleanup_app: the app's jobs, state, audit and the simulated devices'
# registry entries and nodes (also what an interrupted run left).
cleanup_app() {
	python3 - "$NOMAD" "$CONSUL" "$APP" "$PREFIX" <<'PY' || true
import json, sys, urllib.error, urllib.request
nomad, consul, app, prefix = sys.argv[1:5]
def call(url, method="GET", body=None):
    req = urllib.request.Request(url, method=method, data=body)
    with urllib.request.urlopen(req, timeout=30) as r:
        b = r.read()
        return json.loads(b) if b else None
for slot in ("blue", "green"):
    try:
        call(f"{nomad}/v1/job/{app}-{slot}?purge=true", "DELETE")
    except Exception:
        pass
for key in (f"fleetplan/rollouts/{app}/", f"fleetplan/apps/{app}", f"fleetplan/audit/{app}/", f"fleetplan/agent/apps/{app}"):
    call(f"http://{consul}/v1/kv/{key}?recurse=true", "DELETE")
# Simulated nodes an interrupted run left: purge them.
for n in call(f"{nomad}/v1/nodes"):
    if n["Name"].startswith(prefix + "-"):
        try:
            call(f"{nomad}/v1/node/{n['ID']}/purge", "POST", b"")
        except Exception as e:
            print("purging", n["Name"], e, file=sys.stderr)
# ... their Consul members (force-leave, pruned from the member list: a
# member that left stays listed, as "left", for 72 hours, and the registry
# counts such a node as a discrepancy); a member of a killed simulator is
# alive until the server's probes fail it.
import time
deadline = time.time() + 600
while True:
    left = [m for m in call(f"http://{consul}/v1/agent/members") if m["Name"].startswith(prefix + "-")]
    if not left or time.time() > deadline:
        if left:
            print(f"{len(left)} simulated Consul members are still listed; run: consul force-leave -prune NAME", file=sys.stderr)
        break
    for m in left:
        try:
            call(f"http://{consul}/v1/agent/force-leave/{m['Name']}?prune=1", "PUT", b"")
        except Exception:
            pass
    time.sleep(3)
# ... and their registry entries.
import base64
try:
    keys = call(f"http://{consul}/v1/kv/fleetplan/registry/?recurse=true")
except urllib.error.HTTPError:
    keys = []  # 404: no key
for kv in keys or []:
    try:
        dev = json.loads(base64.b64decode(kv["Value"] or b""))
    except Exception:
        continue
    if str(dev.get("name", "")).startswith(prefix + "-"):
        call(f"http://{consul}/v1/kv/{kv['Key']}", "DELETE")
PY
}

cleanup() {
	local rc=$? pid
	trap - EXIT INT TERM
	log "stopping what this run started"
	if [[ -n "${PID_fleetplan:-}" ]]; then kill -INT "$PID_fleetplan" 2>/dev/null || true; fi
	if [[ -n "${PID_nodesim:-}" ]] && kill -0 "$PID_nodesim" 2>/dev/null; then
		kill -INT "$PID_nodesim" 2>/dev/null || true
		for ((i = 0; i < 600; i++)); do kill -0 "$PID_nodesim" 2>/dev/null || break; sleep 0.5; done
	fi
	for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
	cleanup_app
	"$FP" registry sync >/dev/null 2>&1 || true
	if [[ "${SCALE_KEEP:-0}" == 1 || $rc -ne 0 ]]; then
		log "logs and measurements kept in $WORK"
	else
		rm -rf "$WORK"
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "removing what an earlier run may have left"
cleanup_app

# --- the simulated devices ---------------------------------------------------

BAD_AFTER=$((N * 30 / 100))
start proxy "$NODESIM" proxy -stats "$PROXY_STATS" \
	-route "nomad=$PNOMAD=$NOMAD" -route "consul=$PCONSUL=http://$CONSUL"
log "starting $N simulated devices"
T0=$(date +%s.%N)
start nodesim "$NODESIM" -devices "$N" -prefix "$PREFIX" -fleet sim -dir "$WORK/nodesim" \
	-listen "$SIM_STATUS" -bad-version 2.0.0 -bad-after "$BAD_AFTER"

# wait_registered: every simulated device is a ready Nomad node with the mock
# driver and a passing serfHealth in Consul.
python3 - "$NOMAD" "$CONSUL" "$PREFIX" "$N" "$PID_nodesim" "$WORK/registered.json" <<'PY'
import json, sys, time, urllib.request
nomad, consul, prefix, n, pid, out = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], sys.argv[6]
get = lambda u: json.load(urllib.request.urlopen(u, timeout=30))
deadline = time.time() + max(300, n * 1.0)
last = None
while True:
    try:
        open(f"/proc/{pid}/status").close()
    except OSError:
        sys.exit("the simulator exited: see its log")
    try:
        ready = sum(1 for x in get(f"{nomad}/v1/nodes") if x["Name"].startswith(prefix + "-") and x["Status"] == "ready"
                    and x.get("Drivers", {}).get("mock_driver", {}).get("Healthy"))
        serf = sum(1 for c in get(f'http://{consul}/v1/health/state/passing?filter=CheckID%20%3D%3D%20%22serfHealth%22') if c["Node"].startswith(prefix + "-"))
    except Exception as e:
        ready, serf = -1, -1
    if (ready, serf) != last:
        print(f"    {ready}/{n} Nomad nodes ready, {serf}/{n} Consul nodes alive", file=sys.stderr)
        last = (ready, serf)
    if ready == n and serf == n:
        break
    if time.time() > deadline:
        sys.exit(f"timed out: {ready}/{n} Nomad nodes ready, {serf}/{n} Consul nodes alive")
    time.sleep(2)
json.dump({"t": time.time()}, open(out, "w"))
PY
T1=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["t"])' "$WORK/registered.json")
log "$N devices registered in $(python3 -c "print(round($T1-$T0,1))") s"
# Settle, then the simulator's memory: its RSS, and its live heap right
# after a collection (the simulator runs with GOGC=200: memory is
# plentiful here, CPU is not, so its RSS is mostly garbage not yet
# collected).
sleep 10
grep -E '^Vm(RSS|HWM)' "/proc/$PID_nodesim/status" >"$WORK/nodesim-mem-idle.txt"
python3 -c 'import sys,urllib.request; print(urllib.request.urlopen("http://"+sys.argv[1]+"/status?gc=1",timeout=60).read().decode())' "$SIM_STATUS" >"$WORK/nodesim-status-idle.json" || true

# --- server telemetry sampler -------------------------------------------------

# Nomad's and Consul's in-memory telemetry: the last complete 10 s interval.
cat >"$WORK/sampler.py" <<'PY'
import json, sys, time, urllib.request
nomad, consul, out = sys.argv[1:4]
f = open(out, "a", buffering=1)
seen = set()
while True:
    for name, url in (("nomad", f"{nomad}/v1/metrics"), ("consul", f"http://{consul}/v1/agent/metrics")):
        try:
            d = json.load(urllib.request.urlopen(url, timeout=10))
        except Exception:
            continue
        if (name, d["Timestamp"]) in seen:
            continue
        seen.add((name, d["Timestamp"]))
        keep = {"t": time.time(), "server": name, "interval": d["Timestamp"], "counters": {}, "samples": {}, "gauges": {}}
        for c in d["Counters"]:
            keep["counters"][c["Name"] + json.dumps(c.get("Labels") or {}, sort_keys=True)] = c["Count"]
        for c in d["Samples"]:
            keep["samples"][c["Name"] + json.dumps(c.get("Labels") or {}, sort_keys=True)] = c["Count"]
        for g in d["Gauges"]:
            keep["gauges"][g["Name"]] = g["Value"]
        f.write(json.dumps(keep) + "\n")
    time.sleep(3)
PY
start sampler python3 "$WORK/sampler.py" "$NOMAD" "$CONSUL" "$WORK/telemetry.jsonl"

# --- the rollouts ---------------------------------------------------------------

cat >"$WORK/simapp.nomad.hcl" <<'HCL'
# simapp: a system job for simulated devices (Nomad's mock driver; the
# simulator reports it running and registers its service and check).
job "simapp" {
  datacenters = ["dc1"]
  type        = "system"
  group "simapp" {
    network {
      port "http" {}
    }
    service {
      name     = "simapp"
      port     = "http"
      provider = "consul"
    }
    task "simapp" {
      driver = "mock_driver"
      config {
        run_for = "8760h"
      }
      resources {
        cpu    = 10
        memory = 16
      }
    }
  }
}
HCL
policy() { # policy VERSION
	cat >"$WORK/simapp-$1.fleet.hcl" <<HCL
rollout "$APP" {
  fleet { selector = "Meta.fleet == \"sim\"" }
  release {
    jobspec = "simapp.nomad.hcl"
    version = "$1"
  }
  max_parallel = $MAXP
  canary {
    percent = 5
    soak    = "$SOAK"
  }
  wave {
    percent = 10
    soak    = "$SOAK"
  }
  wave {
    percent = 25
    soak    = "$SOAK"
  }
  wave {
    percent = 50
    soak    = "$SOAK"
  }
  wave {
    percent = 100
    soak    = "$SOAK"
  }
  health {
    grace = "5s"
    application {
      path           = "/health"
      interval       = "10s"
      timeout        = "2s"
      expect_version = true
      max_restarts   = 1
    }
  }
  rollback {
    max_failure_percent = 10
    scope               = "fleet"
  }
  offline { max_offline_percent = 10 }
}
HCL
}

# run_fp NAME TIMEOUT ARGS...: runs fleetplan ARGS in $WORK through the
# proxies (stdout to NAME.json, stderr to NAME.log), interrupts it after
# TIMEOUT seconds; sets RUN_T0, RUN_T1, RUN_RC and RUN_HWM (peak RSS, kB).
run_fp() {
	local name=$1 timeout=$2 waited=0 h
	shift 2
	RUN_HWM=0
	RUN_T0=$(date +%s.%N)
	(cd "$WORK" && NOMAD_ADDR="http://$PNOMAD" CONSUL_HTTP_ADDR="$PCONSUL" \
		exec "$FP" "$@" >"$WORK/$name.json" 2>"$WORK/$name.log" 8>&-) &
	PID_fleetplan=$!
	while kill -0 "$PID_fleetplan" 2>/dev/null; do
		h=$(sed -n 's/^VmHWM:\s*\([0-9]*\) kB/\1/p' "/proc/$PID_fleetplan/status" 2>/dev/null || true)
		if [[ -n "$h" ]] && ((h > RUN_HWM)); then RUN_HWM=$h; fi
		sleep 1
		if ((++waited == timeout)); then
			log "$name: still running after ${timeout}s: interrupting it"
			kill -INT "$PID_fleetplan" 2>/dev/null || true
		fi
	done
	RUN_RC=0
	wait "$PID_fleetplan" || RUN_RC=$?
	PID_fleetplan=
	RUN_T1=$(date +%s.%N)
	log "$name: exit $RUN_RC after $(python3 -c "print(round($RUN_T1-$RUN_T0))") s ($(tail -n 3 "$WORK/$name.log" | tr '\n' ' ' | cut -c1-200))"
}

# rollout NAME VERSION: runs apply (bounded by SCALE_ROLLOUT_TIMEOUT) and
# records its wall time, exit code and peak RSS.
rollout() {
	local name=$1 version=$2
	policy "$version"
	log "rollout $name: $APP $version on $N devices (apply -auto-approve; progress in $WORK/$name.log)"
	run_fp "$name" "$ROLLOUT_TIMEOUT" apply -auto-approve -json -local "simapp-$version.fleet.hcl"
	echo "{\"name\":\"$name\",\"version\":\"$version\",\"start\":$RUN_T0,\"end\":$RUN_T1,\"exit_code\":$RUN_RC,\"peak_rss_kb\":$RUN_HWM}" >>"$WORK/rollouts.jsonl"
}

# catchup: the devices the release skipped because they were offline are
# caught up (catch-up -wait, bounded by SCALE_CATCHUP_TIMEOUT) before the
# next release, as an operator would: its pre-flight checklist refuses to
# start while a device does not run the old slot.
catchup() {
	local skipped
	skipped=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(((d.get("rollouts") or [{}])[0].get("state") or {}).get("skipped_count") or 0)' "$WORK/release.json" 2>/dev/null || echo 0)
	if [[ "$skipped" == 0 ]]; then
		return
	fi
	log "catch-up: $skipped device(s) the release skipped while offline (catch-up -wait; progress in $WORK/catchup.log)"
	run_fp catchup "$CATCHUP_TIMEOUT" catch-up -wait -json "$APP"
	echo "{\"skipped\":$skipped,\"start\":$RUN_T0,\"end\":$RUN_T1,\"exit_code\":$RUN_RC}" >"$WORK/catchup-run.json"
}

rollout release 1.0.0
catchup
rollout rollback 2.0.0
sleep 4
grep -E '^Vm(RSS|HWM)' "/proc/$PID_nodesim/status" >"$WORK/nodesim-mem-end.txt"
python3 -c 'import json,sys,urllib.request; print(urllib.request.urlopen("http://"+sys.argv[1]+"/stats",timeout=10).read().decode())' "$PROXY_STATS" >"$WORK/proxy.json"
python3 -c 'import json,sys,urllib.request; print(urllib.request.urlopen("http://"+sys.argv[1]+"/status",timeout=10).read().decode())' "$SIM_STATUS" >"$WORK/nodesim-status.json"
# The archived runs' stages (soak windows).
python3 - "$CONSUL" "$APP" "$WORK" <<'PY'
import base64, json, sys, urllib.request
consul, app, work = sys.argv[1:4]
runs = {}
for line in open(f"{work}/rollouts.jsonl"):
    r = json.loads(line)
    try:
        doc = json.load(open(f"{work}/{r['name']}.json"))
        run = doc["rollouts"][0].get("run")
    except Exception:
        run = None
    if not run:
        continue
    # An archived run, or the rollout's current state (a rolled-back run
    # stays there until the next rollout).
    for key in (f"fleetplan/rollouts/{app}/history/{run}/state", f"fleetplan/rollouts/{app}/state"):
        try:
            kv = json.load(urllib.request.urlopen(f"http://{consul}/v1/kv/{key}", timeout=10))
        except Exception:
            continue
        st = json.loads(base64.b64decode(kv[0]["Value"]))
        if st.get("id") == run:
            st["_end"] = r["end"]
            runs[r["name"]] = st
            break
    else:
        print(f"run {run} of {app}: no state found in Consul KV", file=sys.stderr)
json.dump(runs, open(f"{work}/runs.json", "w"))
PY

# --- the table -------------------------------------------------------------------

python3 "$HERE/scale_report.py" "$WORK" "$N" "$T0" "$T1" "$MAXP" "$SOAK"
