#!/usr/bin/env bash
# The fleetplan demo (make demo): on the dev cluster,
#   1. install edgeinfer 1.0.0 on the fleet (first install, slot blue);
#   2. roll out 2.0.0 through canary, approval (auto) and waves (slot green);
#   3. roll out 3.0.0, which crashes at start: the canary catches it and
#      fleetplan rolls it back by itself; every device stays on 2.0.0;
#   4. print the status, the registry, the report and the audit trail.
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

step "1. First install: edgeinfer 1.0.0"
$FP validate dev-cluster/demo/edgeinfer-v1.fleet.hcl || true
$FP apply -auto-approve dev-cluster/demo/edgeinfer-v1.fleet.hcl

step "2. A good release: edgeinfer 2.0.0 (canary, approval, waves)"
$FP apply -auto-approve dev-cluster/demo/edgeinfer-v2.fleet.hcl

step "3. A bad release: edgeinfer 3.0.0 crashes at start"
set +e
$FP apply -auto-approve dev-cluster/demo/edgeinfer-v3.fleet.hcl
code=$?
set -e
if [[ $code -ne 1 ]]; then
	echo "demo: expected apply of 3.0.0 to be rolled back (exit 1), got exit $code" >&2
	exit 1
fi
echo "apply exited $code: rolled back automatically"

step "4. Where the fleet is now"
$FP status edgeinfer
$FP registry list
if $FP report edgeinfer >/dev/null 2>&1; then
	step "The deployment report"
	$FP report edgeinfer
	step "The audit trail (last 20 records)"
	$FP audit -rollout edgeinfer | tail -20
fi

cat <<'TXT'

The demo is done. Look around:
  Consul UI   http://127.0.0.1:8500/ui   (services edgeinfer, checks per device)
  Nomad UI    http://127.0.0.1:4646/ui   (jobs edgeinfer-blue and edgeinfer-green)
  ./bin/fleetplan status edgeinfer -devices
Stop the cluster with `make dev-cluster-stop`.
TXT
