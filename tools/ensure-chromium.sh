#!/usr/bin/env bash
# Installs Debian's headless Chromium when it is missing: the Consul UI
# end-to-end test (e2e/) drives it. Run by `make test` (and so by .ci/run):
# apt-get as root, or through `sudo -n` otherwise.
set -euo pipefail

if command -v chromium >/dev/null 2>&1 || [[ -x /usr/bin/chromium ]]; then
	exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
	echo "make test: headless Chromium is needed for the Consul UI test (e2e/) and this machine has no apt-get;" >&2
	echo "install Chromium so that \`chromium\` is on PATH, then run make test again." >&2
	exit 1
fi
if [[ $(id -u) -eq 0 ]]; then
	as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
	as_root=(sudo -n)
else
	echo "make test: headless Chromium is needed for the Consul UI test (e2e/) and is not installed;" >&2
	echo "installing it needs root: run \`sudo apt-get install -y --no-install-recommends chromium\` (or make test as root), then make test again." >&2
	exit 1
fi
echo "make test: installing Debian's chromium for the Consul UI test" >&2
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium
