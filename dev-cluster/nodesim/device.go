package main

import (
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/nomad/client"
	"github.com/hashicorp/nomad/client/config"
	"github.com/hashicorp/nomad/client/state"
	"github.com/hashicorp/nomad/nomad/structs"
	structsc "github.com/hashicorp/nomad/nomad/structs/config"
	"github.com/hashicorp/serf/serf"
)

// device is one simulated edge device: an in-process Nomad 1.6.1 client
// and a Consul LAN gossip member (what a device's Consul agent is to the
// servers: the leader registers its node with a serfHealth check).
type device struct {
	sim    *simulator
	index  int
	name   string
	class  string
	id     string
	ip     string
	logger hclog.Logger

	client *client.Client
	serf   *serf.Serf
	// joinedAt: when the gossip member joined (zero before).
	joinedAt time.Time
}

// joinPatience bounds a device's gossip join attempts.
const joinPatience = 3 * time.Minute

// classHW: model, accelerator, memory (MB) per device class, as the dev
// cluster's devices declare them.
var classHW = map[string][3]string{
	"jetson":  {"jetson-orin-nano", "cuda", "8192"},
	"rpi":     {"raspberry-pi-5", "none", "4096"},
	"gateway": {"dell-edge-3200", "none", "16384"},
}

var classes = []string{"jetson", "rpi", "gateway"}

func newDevice(s *simulator, i int) *device {
	class := classes[i%len(classes)]
	name := fmt.Sprintf("%s-%s-%d", s.cfg.prefix, class, i/len(classes)+1)
	// 127.1.0.1, 127.1.0.2, ...: every device has its own loopback address
	// (the dev cluster's devices use 127.0.0.2-13).
	ip := fmt.Sprintf("127.%d.%d.%d", 1+i/(250*250), (i/250)%250, i%250+1)
	return &device{
		sim:    s,
		index:  i,
		name:   name,
		class:  class,
		id:     nodeUUID(s.cfg.prefix + "/" + name),
		ip:     ip,
		logger: s.logger.Named(name),
	}
}

// nodeUUID is a stable UUID for a name: a simulator started again gives
// its devices the same node IDs.
func nodeUUID(name string) string {
	h := sha256.Sum256([]byte(name))
	return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}

// simMemberlistConfig is a simulated member's gossip configuration: the
// protocol of a device's Consul agent (memberlist's LAN profile), tuned the
// way a large LAN is tuned, because the thousand members of a run share the
// simulator's process and the machine's two cores with the servers. What
// every message costs is paid N times in one process, so:
//   - packets are not compressed (loopback: no bandwidth to save; the
//     compressor's 16 KB tables per packet sent were most of the
//     simulator's garbage), the Consul server still compresses its own;
//   - a member retransmits a message log10(N+1) times instead of
//     4·log10(N+1) (Consul's gossip_lan retransmit_mult = 1; the server
//     keeps 4). Each join is news to every member, so a pool's gossip
//     grows as N²: a thousand joins, each retransmitted 12 times by each
//     of the members, took minutes of CPU; a member still hears each
//     message a few times on average;
//   - it gossips every 500 ms (the LAN profile's 200 ms is for a pool whose
//     members each have their own CPU): fewer, fuller packets;
//   - it probes another member every 30 s (5 s timeout: a member that
//     waits for the CPU must not suspect the others), waits 30 s for a
//     stream (a join's push-pull), and never push-pulls on its own (the server's probes, once a second, and its
//     push-pulls are what keep its serfHealth passing and its view fresh).
//
// A member still joins, answers probes, gossips and leaves for real: the
// Consul server sees a device agent.
func simMemberlistConfig(name, ip string, port int, transport memberlist.Transport) *memberlist.Config {
	ml := memberlist.DefaultLANConfig()
	ml.Name = name
	ml.BindAddr = ip
	ml.BindPort = port
	ml.AdvertiseAddr = ip
	ml.AdvertisePort = port
	ml.Transport = transport
	ml.EnableCompression = false
	ml.RetransmitMult = 1
	ml.GossipInterval = 500 * time.Millisecond
	ml.GossipNodes = 2
	ml.ProbeInterval = 30 * time.Second
	ml.ProbeTimeout = 5 * time.Second
	ml.PushPullInterval = 0
	// A join's push-pull carries the whole member list (~150 KB at a
	// thousand members) through a busy process: 30 s, not 10 s.
	ml.TCPTimeout = 30 * time.Second
	ml.LogOutput = io.Discard
	ml.Logger = nil
	return ml
}

// startGossip joins the device to the Consul server's LAN pool. The device
// probes the others rarely: the server's own probes are what keep its
// serfHealth passing.
func (d *device) startGossip() error {
	conf := serf.DefaultConfig()
	conf.Init()
	conf.NodeName = d.name
	conf.Tags = map[string]string{
		"role":    "node",
		"dc":      d.sim.cfg.datacenter,
		"segment": "",
		"id":      d.id,
		"vsn":     "2",
		"vsn_min": "2",
		"vsn_max": "3",
		"build":   "1.14.8:nodesim",
	}
	conf.LogOutput = io.Discard
	transport, err := newSimTransport(d.ip, d.sim.cfg.serfPort)
	if err != nil {
		return fmt.Errorf("starting the gossip member of device %s: %w", d.name, err)
	}
	conf.MemberlistConfig = simMemberlistConfig(d.name, d.ip, d.sim.cfg.serfPort, transport)
	conf.ReapInterval = time.Minute
	conf.ReconnectInterval = time.Minute
	conf.QueueCheckInterval = time.Minute
	s, err := serf.Create(conf)
	if err != nil {
		_ = transport.Shutdown()
		return fmt.Errorf("starting the gossip member of device %s on %s:%d: %w", d.name, d.ip, d.sim.cfg.serfPort, err)
	}
	d.serf = s
	// Join through the Consul server (it counts the device at once), else,
	// when that fails, through a device that already joined; alternating,
	// backing off, for up to joinPatience. The simulator then makes sure
	// the server has it (simulator.ensureMembers).
	backoff := time.Second
	deadline := time.Now().Add(joinPatience)
	for try := 0; ; try++ {
		addr := d.sim.cfg.consulSerf
		if peer := d.sim.joinedPeer(); peer != "" && try%2 == 1 {
			addr = peer
		}
		if _, err = s.Join([]string{addr}, true); err == nil {
			d.sim.joined(d)
			return nil
		}
		if time.Now().Add(backoff).After(deadline) {
			break
		}
		time.Sleep(backoff)
		backoff = min(2*backoff, 8*time.Second)
	}
	_ = s.Shutdown()
	d.serf = nil
	return fmt.Errorf("device %s joining Consul's LAN pool (server %s) for %s: %w (is the dev cluster's Consul server up? is the machine overloaded?)", d.name, d.sim.cfg.consulSerf, joinPatience, err)
}

// startNomad starts the device's Nomad client.
func (d *device) startNomad() error {
	cfg := d.sim.cfg
	root := filepath.Join(cfg.dir, d.name)
	stateDir, allocDir := filepath.Join(root, "state"), filepath.Join(root, "alloc")
	for _, dir := range []string{stateDir, allocDir} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("creating the folder of device %s: %w", d.name, err)
		}
	}
	// The client reads its node ID from its state folder.
	if err := os.WriteFile(filepath.Join(stateDir, "client-id"), []byte(d.id), 0o600); err != nil {
		return fmt.Errorf("writing the node ID of device %s: %w", d.name, err)
	}
	if err := os.WriteFile(filepath.Join(stateDir, "secret-id"), []byte(nodeUUID("secret/"+cfg.prefix+"/"+d.name)), 0o600); err != nil {
		return fmt.Errorf("writing the node secret of device %s: %w", d.name, err)
	}

	hw := classHW[d.class]
	memMB, _ := strconv.Atoi(hw[2])
	c := config.DefaultConfig()
	c.DevMode = false
	c.Logger = hclog.NewInterceptLogger(&hclog.LoggerOptions{
		Name:   d.name,
		Level:  d.sim.logLevel,
		Output: d.sim.logOut,
	})
	c.Region = "global"
	c.StateDir, c.AllocDir = stateDir, allocDir
	c.Servers = cfg.nomadServers
	c.NetworkSpeed = 1000
	c.CpuCompute = 4000
	c.MemoryMB = memMB
	c.MaxKillTimeout = 30 * time.Second
	c.StatsCollectionInterval = 10 * time.Minute
	// The periodic collection only checks the disk usage thresholds (set
	// out of reach below: a simulated allocation writes nothing) by
	// reading the host's mounts and disk stats: 1,000 clients once a
	// minute were a tenth of the simulator's CPU. Terminal allocations are
	// still collected past GCMaxAllocs when new ones arrive.
	c.GCInterval = 24 * time.Hour
	c.GCParallelDestroys = 1
	c.GCDiskUsageThreshold = 100
	c.GCInodeUsageThreshold = 100
	c.GCMaxAllocs = 20
	c.NoHostUUID = true
	c.DisableRemoteExec = true
	c.RPCHoldTimeout = 5 * time.Second
	c.MinDynamicPort, c.MaxDynamicPort = 20000, 32000
	c.ClientMinPort, c.ClientMaxPort = 14000, 14512
	c.ChrootEnv = map[string]string{}
	c.ConsulConfig.Addr = cfg.consulAddr
	c.ConsulConfig.ClientAutoJoin = boolPtr(false)
	c.VaultConfig.Enabled = boolPtr(false)
	// Only cheap, local fingerprints: the rest is declared below (a
	// periodic Consul fingerprint of 1,000 clients would be load of its
	// own on the Consul server).
	c.Options = map[string]string{
		"fingerprint.allowlist": "arch,nomad,signal",
	}
	c.PluginLoader = d.sim.plugins
	c.PluginSingletonLoader = d.sim.singletons
	c.StateDBFactory = state.GetStateDBFactory(true)
	c.AllocRunnerFactory = d.allocRunnerFactory()
	c.Artifact = &config.ArtifactConfig{}
	c.TLSConfig = &structsc.TLSConfig{}

	c.Node = &structs.Node{
		Datacenter: cfg.datacenter,
		Name:       d.name,
		NodeClass:  d.class,
		HTTPAddr:   d.ip + ":4646",
		Attributes: map[string]string{
			"kernel.name":               "linux",
			"os.name":                   "ubuntu",
			"os.version":                "22.04",
			"cpu.arch":                  "amd64",
			"memory.totalbytes":         strconv.FormatInt(int64(memMB)<<20, 10),
			"unique.hostname":           d.name,
			"unique.network.ip-address": d.ip,
			"consul.version":            "1.14.8",
			"consul.revision":           "nodesim",
			"consul.server":             "false",
			"consul.datacenter":         cfg.datacenter,
			"consul.connect":            "false",
			"consul.grpc":               "-1",
			"unique.consul.name":        d.name,
			"nodesim.simulated":         "true",
		},
		Meta: map[string]string{
			"fleet":          cfg.fleet,
			"hw.model":       hw[0],
			"hw.accelerator": hw[1],
			"hw.mem_mb":      hw[2],
			"nodesim":        cfg.prefix,
		},
		NodeResources: &structs.NodeResources{
			Cpu:    structs.NodeCpuResources{CpuShares: 4000},
			Memory: structs.NodeMemoryResources{MemoryMB: int64(memMB)},
			Disk:   structs.NodeDiskResources{DiskMB: 100_000},
			Networks: []*structs.NetworkResource{{
				Mode: "host", Device: "lo", IP: d.ip, CIDR: d.ip + "/32", MBits: 1000,
			}},
			NodeNetworks: []*structs.NodeNetworkResource{{
				Mode: "host", Device: "lo", Speed: 1000,
				Addresses: []structs.NodeNetworkAddress{{
					Family: structs.NodeNetworkAF_IPv4, Alias: "default", Address: d.ip,
				}},
			}},
			MinDynamicPort: 20000,
			MaxDynamicPort: 32000,
		},
		ReservedResources: &structs.NodeReservedResources{},
		Reserved:          &structs.Resources{},
		Links:             map[string]string{},
		HostVolumes:       map[string]*structs.ClientHostVolumeConfig{},
		HostNetworks:      map[string]*structs.ClientHostNetworkConfig{},
	}
	cl, err := client.NewClient(c, noopCatalog{}, noopProxies{}, noopServiceReg{}, nil)
	if err != nil {
		return fmt.Errorf("starting the Nomad client of device %s (servers %v): %w", d.name, cfg.nomadServers, err)
	}
	d.client = cl
	return nil
}

// stopNomad shuts the device's Nomad client down.
func (d *device) stopNomad() {
	if d.client != nil {
		if err := d.client.Shutdown(); err != nil {
			d.logger.Warn("stopping the Nomad client", "error", err)
		}
	}
}

// leave leaves the gossip pool (the Consul leader then deregisters the
// node and its services); the member keeps running, forwarding the
// others' leaves, until shutdownGossip.
func (d *device) leave() {
	if d.serf != nil {
		if err := d.serf.Leave(); err != nil {
			d.logger.Warn("leaving Consul's LAN pool", "error", err)
		}
	}
}

func (d *device) shutdownGossip() {
	if d.serf != nil {
		if err := d.serf.Shutdown(); err != nil {
			d.logger.Warn("stopping the gossip member", "error", err)
		}
	}
}

func boolPtr(b bool) *bool { return &b }
