#!/usr/bin/env bash
# The fleetplan demo (make demo): on the dev cluster,
#   1. install edgeinfer 1.0.0 on the fleet (first install, slot blue), with
#      the controller running in the apply process;
#   2. install the controller service on Nomad (two instances, one leads);
#   3. submit 2.0.0 to it and let the terminal go (apply -detach): the
#      rollout goes on; kill the leader during a wave: the standby takes over
#      and finishes it (canary, approval (auto), waves; slot green);
#   4. roll out 3.0.0, which crashes at start, through the service: the
#      canary catches it and fleetplan rolls it back by itself; every device
#      stays on 2.0.0;
#   5. print the status, the registry, the report and the audit trail, and
#      uninstall the controller service (apply runs in-process again).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE/.."
FP=./bin/fleetplan
export NOMAD_ADDR=${NOMAD_ADDR:-http://127.0.0.1:4646}
export CONSUL_HTTP_ADDR=${CONSUL_HTTP_ADDR:-127.0.0.1:8500}

step() { printf '\n\033[1m### %s\033[0m\n\n' "$*"; }

step "The fleet"
$FP registry sync >/dev/null
$FP registry list

# The demo starts from a clean application: forget an earlier demo's rollouts.
if [[ "${DEMO_RESET:-1}" == 1 ]]; then
	$FP registry sync >/dev/null
	python3 - <<'PY'
import urllib.request, os
addr = "http://" + os.environ["CONSUL_HTTP_ADDR"]
for key in ("fleetplan/rollouts/edgeinfer?recurse=true", "fleetplan/apps/edgeinfer", "fleetplan/audit/edgeinfer?recurse=true"):
    req = urllib.request.Request(f"{addr}/v1/kv/{key}", method="DELETE")
    urllib.request.urlopen(req, timeout=5).read()
PY
	# ... and the devices' slot metadata, so no device starts on a stale slot.
	python3 - <<'PY'
import json, os, urllib.request
addr = os.environ["NOMAD_ADDR"]
for n in json.load(urllib.request.urlopen(addr + "/v1/nodes", timeout=5)):
    body = json.dumps({"NodeID": n["ID"], "Meta": {"fleetplan.edgeinfer.slot": None}}).encode()
    req = urllib.request.Request(addr + "/v1/client/metadata?node_id=" + n["ID"], data=body, method="POST")
    try:
        urllib.request.urlopen(req, timeout=10).read()
    except Exception as e:
        print("could not reset the slot metadata of", n["Name"], e)
PY
	for slot in blue green; do
		python3 - "$slot" <<'PY' || true
import urllib.request, os, sys
req = urllib.request.Request(os.environ["NOMAD_ADDR"] + "/v1/job/edgeinfer-" + sys.argv[1] + "?purge=true", method="DELETE")
urllib.request.urlopen(req, timeout=5).read()
PY
	done
fi

step "0. The fleetplan device agent on every device (health layers 1-4 in Consul)"
# The dev cluster's devices share one busy host: leave CPU out of layer 2.
$FP agent install -default-system cpu=off
# Wait until the agent registered its node checks on every device (the
# pre-flight checklist stops a rollout on a device without them).
for ((i = 0; i < 120; i++)); do
	if python3 - <<'PY'
import json, os, sys, urllib.request
addr = "http://" + os.environ["CONSUL_HTTP_ADDR"]
nomad = os.environ["NOMAD_ADDR"]
devices = {n["Name"] for n in json.load(urllib.request.urlopen(nomad + "/v1/nodes", timeout=5)) if n["Status"] == "ready"}
checks = json.load(urllib.request.urlopen(addr + "/v1/health/state/any", timeout=5))
have = {c["Node"] for c in checks if c["Name"] == "fleetplan L2 system"}
sys.exit(0 if devices and devices <= have else 1)
PY
	then break; fi
	sleep 1
done

step "1. First install: edgeinfer 1.0.0"
$FP validate dev-cluster/demo/edgeinfer-v1.fleet.hcl || true
$FP apply -auto-approve dev-cluster/demo/edgeinfer-v1.fleet.hcl

step "2. The controller service on Nomad (two instances: one leads, one stands by)"
$FP controller install -command "$PWD/bin/fleetplan"   # the dev cluster's devices share this host
# controllers prints each instance of the service: address, role, pid, name.
controllers() {
	python3 - <<'PY'
import json, os, urllib.request
addr = "http://" + os.environ["CONSUL_HTTP_ADDR"]
for e in json.load(urllib.request.urlopen(addr + "/v1/health/service/fleetplan-controller", timeout=5)):
    a = "%s:%d" % (e["Service"]["Address"] or e["Node"]["Address"], e["Service"]["Port"])
    try:
        h = json.load(urllib.request.urlopen("http://" + a + "/v1/health", timeout=2))
        print(a, h["role"], h["pid"], h["instance"])
    except Exception as ex:
        print(a, "unreachable", 0, type(ex).__name__)
PY
}
for ((i = 0; i < 90; i++)); do
	if [[ "$(controllers | awk '{print $2}' | sort | tr '\n' ' ')" == "leader standby " ]]; then break; fi
	sleep 1
done
controllers

step "3. A good release, edgeinfer 2.0.0, submitted to the service; the terminal goes away"
$FP apply -detach -auto-approve dev-cluster/demo/edgeinfer-v2.fleet.hcl
echo
echo "apply returned: nothing of this rollout runs in this terminal any more."
# Wait for the first wave, then kill the leader's process (as a crashed node would).
for ((i = 0; i < 300; i++)); do
	if $FP status edgeinfer 2>/dev/null | grep -q "WAVE"; then break; fi
	sleep 1
done
read -r _ _ pid name < <(controllers | awk '$2 == "leader"') || true
if [[ -n "${pid:-}" && "$pid" != 0 ]]; then
	echo
	echo "Killing the leader (pid $pid, $name) in the middle of the wave..."
	kill -KILL "$pid"
	start=$SECONDS
	for ((i = 0; i < 60; i++)); do
		if controllers | grep -v " $pid " | grep -q " leader "; then break; fi
		sleep 1
	done
	echo "A new leader after $((SECONDS - start)) s, once a standby saw its heartbeat stop for a TTL and destroyed its Consul session (the standby, or the killed instance that Nomad restarted, whichever took the lock first), resumes the rollout where it was:"
	controllers
fi
echo
echo "Following it (fleetplan status -watch edgeinfer):"
$FP status -watch edgeinfer </dev/null | cat

step "4. A bad release: edgeinfer 3.0.0 crashes at start (submitted to the service, followed to the end)"
set +e
$FP apply -auto-approve dev-cluster/demo/edgeinfer-v3.fleet.hcl </dev/null | cat
code=${PIPESTATUS[0]}
set -e
if [[ $code -ne 1 ]]; then
	echo "demo: expected apply of 3.0.0 to be rolled back (exit 1), got exit $code" >&2
	exit 1
fi
echo "apply exited $code: rolled back automatically"

step "5. Where the fleet is now"
$FP status edgeinfer
$FP registry list
if $FP report edgeinfer >/dev/null 2>&1; then
	step "The deployment report"
	$FP report edgeinfer
	step "The audit trail (last 20 records)"
	$FP audit -rollout edgeinfer | tail -20
fi

step "The controller service is uninstalled again"
# So that later `fleetplan apply` runs (and `make test`) run in-process.
$FP controller uninstall

cat <<'TXT'

The demo is done. Look around:
  Consul UI   http://127.0.0.1:8500/ui   (services edgeinfer, checks per device)
  ./bin/fleetplan status edgeinfer -devices
  ./bin/fleetplan status -watch edgeinfer   (the live view; this Nomad is built without its web UI)
  ./bin/fleetplan controller install -command "$PWD/bin/fleetplan"   (rollouts in the controller service again)
Stop the cluster with `make dev-cluster-stop`.
TXT
