package ike

import (
	"bytes"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/espy-dpi/espy/ike/message"
)

// natProxy forwards UDP between one client and a target from a different
// source port, like a NAT, and can drop datagrams.
type natProxy struct {
	front, back *net.UDPConn
	target      netip.AddrPort

	mu     sync.Mutex
	client netip.AddrPort
	seen   [][]byte // datagrams from the target, in order
	drop   func(fromTarget bool, pkt []byte) bool
}

func newNATProxy(t *testing.T, target netip.AddrPort, drop func(bool, []byte) bool) *natProxy {
	t.Helper()
	open := func() *net.UDPConn {
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(loopback, 0)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	p := &natProxy{front: open(), back: open(), target: target, drop: drop}
	go p.pump(p.front, false)
	go p.pump(p.back, true)
	return p
}

func (p *natProxy) pump(c *net.UDPConn, fromTarget bool) {
	buf := make([]byte, 65536)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		pkt := append([]byte(nil), buf[:n]...)
		p.mu.Lock()
		if fromTarget {
			p.seen = append(p.seen, pkt)
		} else {
			p.client = from
		}
		client, drop := p.client, p.drop != nil && p.drop(fromTarget, pkt)
		p.mu.Unlock()
		if drop {
			continue
		}
		if fromTarget {
			p.front.WriteToUDPAddrPort(pkt, client)
		} else {
			p.back.WriteToUDPAddrPort(pkt, p.target)
		}
	}
}

func (p *natProxy) addr() netip.AddrPort { return p.front.LocalAddr().(*net.UDPAddr).AddrPort() }

func (p *natProxy) backPort() uint16 { return p.back.LocalAddr().(*net.UDPAddr).AddrPort().Port() }

func (p *natProxy) responses() [][]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([][]byte(nil), p.seen...)
}

// exchangeOf returns the exchange type of an IKE datagram, skipping a
// non-ESP marker.
func exchangeOf(pkt []byte) message.ExchangeType {
	if len(pkt) >= 4 && bytes.Equal(pkt[:4], nonESPMarker) {
		pkt = pkt[4:]
	}
	h, err := message.DecodeHeader(pkt)
	if err != nil {
		return 0
	}
	return h.Exchange
}

// dropFirst drops the first response of each listed exchange.
func dropFirst(exchanges ...message.ExchangeType) func(bool, []byte) bool {
	dropped := map[message.ExchangeType]bool{}
	return func(fromTarget bool, pkt []byte) bool {
		if !fromTarget {
			return false
		}
		x := exchangeOf(pkt)
		for _, e := range exchanges {
			if x == e && !dropped[x] {
				dropped[x] = true
				return true
			}
		}
		return false
	}
}

// TestNATAndLostResponses runs the handshake through a NAT-like proxy that
// loses the first IKE_SA_INIT and the first IKE_AUTH response. The
// initiator must retransmit, the responder must answer the retransmissions
// with the very same bytes, and both sides must detect the NAT and move
// IKE and ESP to the NAT-T port.
func TestNATAndLostResponses(t *testing.T) {
	p := newPair(t, "aes128-sha256-ecp256", "null-sha512", ListenConfig{})
	p.nat = true
	rike, rnatt := p.resp.Addrs()
	proxyIKE := newNATProxy(t, rike, dropFirst(message.IKE_SA_INIT))
	proxyNATT := newNATProxy(t, rnatt, dropFirst(message.IKE_AUTH))
	p.iniCfg.RemoteNATPort = proxyNATT.addr().Port()
	rike = proxyIKE.addr()
	sa, err := p.ini.Initiate(t.Context(), p.iniCfg, rike)
	if err != nil {
		t.Fatal(err)
	}
	i, r := checkEstablished(t, p, sa)
	// The proxy translates both ends (the initiator talks to the proxy's
	// address, the responder sees the proxy's back port), so each side
	// detects a NAT on both paths.
	if local, remote := sa.NAT(); !local || !remote {
		t.Fatalf("initiator NAT detection: local %v remote %v", local, remote)
	}
	rsa := p.responderSA(t, func() uint64 { a, _ := sa.SPIs(); return a }())
	if local, remote := rsa.NAT(); !local || !remote {
		t.Fatalf("responder NAT detection: local %v remote %v", local, remote)
	}
	if i.Encap != EncapUDP || r.Encap != EncapUDP {
		t.Fatal("ESP not UDP-encapsulated behind a NAT")
	}
	// The responder sees the initiator at the NAT's mapped port.
	in, _ := p.respReg.get(r.InSPI)
	if in.SrcPort != proxyNATT.backPort() || in.DstPort != rnatt.Port() {
		t.Fatalf("responder registered %d -> %d, want %d -> %d", in.SrcPort, in.DstPort, proxyNATT.backPort(), rnatt.Port())
	}
	for _, c := range []struct {
		proxy *natProxy
		exch  message.ExchangeType
	}{{proxyIKE, message.IKE_SA_INIT}, {proxyNATT, message.IKE_AUTH}} {
		var got [][]byte
		for _, pkt := range c.proxy.responses() {
			if exchangeOf(pkt) == c.exch {
				got = append(got, pkt)
			}
		}
		if len(got) != 2 || !bytes.Equal(got[0], got[1]) {
			t.Fatalf("%v: responder sent %d responses (identical: %v), want the same one twice", c.exch, len(got), len(got) == 2 && bytes.Equal(got[0], got[1]))
		}
	}
}

// TestNATKeepalive checks that the side behind the NAT sends one-byte
// keepalives on the NAT-T port, through the NAT, to the peer.
func TestNATKeepalive(t *testing.T) {
	p := newPair(t, "aes128gcm16-prfsha256-x25519", "null-sha256", ListenConfig{})
	p.nat = true
	rike, rnatt := p.resp.Addrs()
	proxyIKE := newNATProxy(t, rike, nil)
	var keepalives atomic.Int32
	proxyNATT := newNATProxy(t, rnatt, func(fromTarget bool, pkt []byte) bool {
		if !fromTarget && len(pkt) == 1 && pkt[0] == 0xff {
			keepalives.Add(1)
		}
		return false
	})
	p.iniCfg.RemoteNATPort = proxyNATT.addr().Port()
	p.iniCfg.NATKeepalive = 20 * time.Millisecond
	sa, err := p.ini.Initiate(t.Context(), p.iniCfg, proxyIKE.addr())
	if err != nil {
		t.Fatal(err)
	}
	checkEstablished(t, p, sa)
	waitFor(t, func() bool { return keepalives.Load() >= 3 })
	// Keepalives are not IKE messages: the responder ignores them.
	if len(p.resp.IKESAs()) != 1 {
		t.Fatal("responder lost the SA")
	}
}
