#!/usr/bin/env python3
"""ACL set-up of the fleetplan dev cluster (cluster.sh, ACL=1).

usage: acl.py COMMAND STATE_DIR [ARGS]

  get STATE URL            GET URL with the bootstrap tokens of STATE (if any)
                           as X-Consul-Token / X-Nomad-Token; prints the body
  consul STATE REPO NODES  bootstrap Consul's ACLs, the agent tokens (server
                           and NODES), the Nomad agents' token and the
                           fleetplan tokens from REPO/acl/*.consul.hcl
  nomad STATE REPO         bootstrap Nomad's ACLs, the fleetplan tokens from
                           REPO/acl/*.nomad.hcl, and the Nomad Variables
                           nomad/jobs/fleetplan-agent and
                           nomad/jobs/fleetplan-controller (items
                           consul_token, nomad_token) the device agent's and
                           the controller service's jobs read
  token STATE NAME         print the secret of STATE/acl/NAME.token (for the
                           agent configs cluster.sh writes; never logged)

Every secret goes to a file of STATE/acl with mode 0600; nothing prints a
secret but `token`, whose output cluster.sh writes into a 0600 config file.
"""
import json
import os
import sys
import time
import urllib.error
import urllib.request

NOMAD = "http://127.0.0.1:4646"
CONSUL = "http://127.0.0.1:8500"
# The fleetplan roles: each gets a Consul and a Nomad token from
# acl/<role>.consul.hcl and acl/<role>.nomad.hcl.
ROLES = ("controller", "agent", "operator")
AGENT_VARIABLE = "nomad/jobs/fleetplan-agent"
CONTROLLER_VARIABLE = "nomad/jobs/fleetplan-controller"


def acl_dir(state):
    return os.path.join(state, "acl")


def write_secret(state, name, secret):
    d = acl_dir(state)
    os.makedirs(d, mode=0o700, exist_ok=True)
    path = os.path.join(d, name + ".token")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret)
    os.chmod(path, 0o600)
    return path


def read_secret(state, name):
    path = os.path.join(acl_dir(state), name + ".token")
    try:
        with open(path) as f:
            return f.read().strip()
    except FileNotFoundError:
        return ""


def request(method, url, token_header=None, token="", body=None, timeout=10):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if token_header and token:
        req.add_header(token_header, token)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        raw = r.read()
    return json.loads(raw) if raw.strip() else None


def retry(what, fn, timeout=60):
    deadline = time.time() + timeout
    while True:
        try:
            return fn()
        except (urllib.error.URLError, OSError, ValueError) as e:
            if time.time() > deadline:
                detail = e.read().decode(errors="replace") if isinstance(e, urllib.error.HTTPError) else str(e)
                sys.exit("error: %s: %s" % (what, detail.strip()))
            time.sleep(0.5)


def cmd_get(state, url):
    req = urllib.request.Request(url)
    for header, name in (("X-Consul-Token", "consul.bootstrap"), ("X-Nomad-Token", "nomad.bootstrap")):
        t = read_secret(state, name)
        if t:
            req.add_header(header, t)
    sys.stdout.write(urllib.request.urlopen(req, timeout=5).read().decode())


def policy_rules(repo, name):
    with open(os.path.join(repo, "acl", name)) as f:
        return f.read()


def consul_token(state, mgmt, name, description, policies=(), node_identities=()):
    """Creates a Consul token unless its file exists; returns its secret."""
    secret = read_secret(state, name)
    if secret:
        return secret
    body = {"Description": description, "Policies": [{"Name": p} for p in policies]}
    if node_identities:
        body["NodeIdentities"] = [{"NodeName": n, "Datacenter": "dc1"} for n in node_identities]
    tok = retry("creating the Consul token " + name,
                lambda: request("PUT", CONSUL + "/v1/acl/token", "X-Consul-Token", mgmt, body))
    write_secret(state, name, tok["SecretID"])
    return tok["SecretID"]


def consul_policy(mgmt, name, rules, description):
    existing = request("GET", CONSUL + "/v1/acl/policies", "X-Consul-Token", mgmt) or []
    if any(p["Name"] == name for p in existing):
        return
    retry("creating the Consul policy " + name,
          lambda: request("PUT", CONSUL + "/v1/acl/policy", "X-Consul-Token", mgmt,
                          {"Name": name, "Description": description, "Rules": rules}))


def cmd_consul(state, repo, nodes):
    mgmt = read_secret(state, "consul.bootstrap")
    if not mgmt:
        # The ACL system comes up a moment after the leader.
        tok = retry("bootstrapping Consul's ACLs",
                    lambda: request("PUT", CONSUL + "/v1/acl/bootstrap"), timeout=60)
        mgmt = tok["SecretID"]
        write_secret(state, "consul.bootstrap", mgmt)
    # The server's own agent token (its node in the catalog), persisted by
    # enable_token_persistence.
    server = consul_token(state, mgmt, "consul-agent.fleetplan-server",
                          "agent token of the Consul server fleetplan-server",
                          node_identities=["fleetplan-server"])
    retry("setting the Consul server's agent token",
          lambda: request("PUT", CONSUL + "/v1/agent/token/agent", "X-Consul-Token", mgmt, {"Token": server}))
    for n in nodes:
        consul_token(state, mgmt, "consul-agent." + n, "agent token of the Consul agent of device " + n,
                     node_identities=[n])
    consul_policy(mgmt, "nomad-agents", policy_rules(repo, "nomad-agents.consul.hcl"),
                  "Nomad servers and clients (acl/nomad-agents.consul.hcl)")
    consul_token(state, mgmt, "nomad-agents.consul", "Nomad servers and clients", ["nomad-agents"])
    for role in ROLES:
        consul_policy(mgmt, "fleetplan-" + role, policy_rules(repo, role + ".consul.hcl"),
                      "fleetplan %s (acl/%s.consul.hcl)" % (role, role))
        consul_token(state, mgmt, role + ".consul", "fleetplan-" + role, ["fleetplan-" + role])


def nomad_token(state, mgmt, name, policies):
    secret = read_secret(state, name)
    if secret:
        return secret
    tok = retry("creating the Nomad token " + name,
                lambda: request("POST", NOMAD + "/v1/acl/token", "X-Nomad-Token", mgmt,
                                {"Name": "fleetplan-" + name.split(".")[0], "Type": "client", "Policies": list(policies)}))
    write_secret(state, name, tok["SecretID"])
    return tok["SecretID"]


def cmd_nomad(state, repo):
    mgmt = read_secret(state, "nomad.bootstrap")
    if not mgmt:
        tok = retry("bootstrapping Nomad's ACLs",
                    lambda: request("POST", NOMAD + "/v1/acl/bootstrap"), timeout=60)
        mgmt = tok["SecretID"]
        write_secret(state, "nomad.bootstrap", mgmt)
    for role in ROLES:
        name = "fleetplan-" + role
        retry("creating the Nomad policy " + name,
              lambda: request("POST", NOMAD + "/v1/acl/policy/" + name, "X-Nomad-Token", mgmt,
                              {"Name": name, "Description": "fleetplan %s (acl/%s.nomad.hcl)" % (role, role),
                               "Rules": policy_rules(repo, role + ".nomad.hcl")}))
        nomad_token(state, mgmt, role + ".nomad", [name])
    # The device agent's tokens, read by its job's template through the
    # job's workload identity (fleetplan agent install -token-from-variable).
    # The same for the controller service's job (fleetplan-controller).
    for role, path in (("agent", AGENT_VARIABLE), ("controller", CONTROLLER_VARIABLE)):
        items = {"consul_token": read_secret(state, role + ".consul"), "nomad_token": read_secret(state, role + ".nomad")}
        retry("writing the Nomad Variable " + path,
              lambda: request("PUT", NOMAD + "/v1/var/" + path, "X-Nomad-Token", mgmt,
                              {"Namespace": "default", "Path": path, "Items": items}))


def main(argv):
    if len(argv) < 3:
        sys.exit(__doc__)
    cmd, state = argv[1], argv[2]
    if cmd == "get":
        cmd_get(state, argv[3])
    elif cmd == "consul":
        cmd_consul(state, argv[3], argv[4:])
    elif cmd == "nomad":
        cmd_nomad(state, argv[3])
    elif cmd == "token":
        secret = read_secret(state, argv[3])
        if not secret:
            sys.exit("error: no token %s in %s" % (argv[3], acl_dir(state)))
        sys.stdout.write(secret)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
