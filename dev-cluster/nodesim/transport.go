package main

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// udpPacketMax is the largest gossip packet read (memberlist's own bound).
const udpPacketMax = 65536

// simTransport is memberlist's network transport for a simulated member: a
// UDP socket and a TCP listener on the device's own address, like
// memberlist's NetTransport, except that a packet is read into the
// listener's one buffer and copied out at its size. NetTransport allocates
// 64 KB per packet received; with a thousand members in one process that
// garbage was a third of the simulator's allocations and most of its CPU
// (the Go collector) while the devices joined.
type simTransport struct {
	ip       net.IP
	port     int
	udp      *net.UDPConn
	tcp      *net.TCPListener
	packetCh chan *memberlist.Packet
	streamCh chan net.Conn
	shutdown atomic.Bool
	wg       sync.WaitGroup
}

func newSimTransport(ip string, port int) (*simTransport, error) {
	addr := net.ParseIP(ip)
	if addr == nil {
		return nil, fmt.Errorf("gossip address %q is not an IP address", ip)
	}
	tcp, err := net.ListenTCP("tcp", &net.TCPAddr{IP: addr, Port: port})
	if err != nil {
		return nil, fmt.Errorf("listening for gossip streams on %s:%d: %w", ip, port, err)
	}
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: addr, Port: port})
	if err != nil {
		_ = tcp.Close()
		return nil, fmt.Errorf("listening for gossip packets on %s:%d: %w", ip, port, err)
	}
	// Bursts of gossip arrive while a thousand members join: a larger
	// receive window (the kernel caps it at net.core.rmem_max).
	_ = udp.SetReadBuffer(2 << 20)
	t := &simTransport{
		ip:       addr,
		port:     port,
		udp:      udp,
		tcp:      tcp,
		packetCh: make(chan *memberlist.Packet),
		streamCh: make(chan net.Conn),
	}
	t.wg.Add(2)
	go t.tcpListen()
	go t.udpListen()
	return t, nil
}

// FinalAdvertiseAddr: a simulated member advertises the address it is
// bound to.
func (t *simTransport) FinalAdvertiseAddr(string, int) (net.IP, int, error) {
	return t.ip, t.port, nil
}

func (t *simTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	to, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return time.Time{}, fmt.Errorf("resolving the gossip address %s: %w", addr, err)
	}
	_, err = t.udp.WriteTo(b, to)
	return time.Now(), err
}

func (t *simTransport) PacketCh() <-chan *memberlist.Packet { return t.packetCh }

// DialTimeout opens a stream (push-pull, a join) from the member's own
// address, as a device would.
func (t *simTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout, LocalAddr: &net.TCPAddr{IP: t.ip}}
	return d.Dial("tcp", addr)
}

func (t *simTransport) StreamCh() <-chan net.Conn { return t.streamCh }

func (t *simTransport) Shutdown() error {
	t.shutdown.Store(true)
	_ = t.tcp.Close()
	_ = t.udp.Close()
	t.wg.Wait()
	return nil
}

func (t *simTransport) tcpListen() {
	defer t.wg.Done()
	delay := time.Duration(0)
	for {
		conn, err := t.tcp.AcceptTCP()
		if err != nil {
			if t.shutdown.Load() {
				return
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			time.Sleep(delay)
			continue
		}
		delay = 0
		t.streamCh <- conn
	}
}

func (t *simTransport) udpListen() {
	defer t.wg.Done()
	buf := make([]byte, udpPacketMax)
	for {
		n, addr, err := t.udp.ReadFrom(buf)
		ts := time.Now()
		if err != nil {
			if t.shutdown.Load() {
				return
			}
			continue
		}
		if n < 1 {
			continue
		}
		t.packetCh <- &memberlist.Packet{Buf: append([]byte(nil), buf[:n]...), From: addr, Timestamp: ts}
	}
}
