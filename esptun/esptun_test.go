package esptun

import (
	"net/netip"
	"testing"
	"time"

	"github.com/espy-dpi/espy/ike"
	"github.com/espy-dpi/espy/internal/charonlab"
)

func peerConfig(local, remote string, esp string, mode ike.Mode, encap bool, lts, rts []netip.Prefix, reg ike.SARegistrar) *ike.Config {
	c := &ike.Config{
		LocalID: ike.FQDN(local), RemoteID: ike.FQDN(remote), PSK: []byte(labPSK),
		IKE:        []ike.Proposal{ike.MustParseProposal("aes128gcm16-prfsha256-x25519", true)},
		ESP:        []ike.Proposal{ike.MustParseProposal(esp, false)},
		Mode:       mode,
		ForceEncap: encap,
		Retransmit: ike.Retransmit{Timeout: time.Second, Base: 1.5, Tries: 3},
		Registrar:  reg,
	}
	for _, p := range lts {
		c.LocalTS = append(c.LocalTS, ike.PrefixSelector(p))
	}
	for _, p := range rts {
		c.RemoteTS = append(c.RemoteTS, ike.PrefixSelector(p))
	}
	return c
}

// TestEspyToEspy runs IKE between two espy instances in two namespaces,
// each with the userspace data plane, and sends ping and 1 MB of TCP each
// way through the Child SA, in tunnel and transport mode, as plain ESP and
// UDP-encapsulated, for ESP-NULL and the AEAD algorithms.
func TestEspyToEspy(t *testing.T) {
	cases := []struct {
		esp   string
		mode  ike.Mode
		encap bool
	}{
		{"null-sha256", ike.ModeTunnel, true},
		{"null-sha1", ike.ModeTransport, false},
		{"aes128gmac", ike.ModeTunnel, false},
		{"aes256gmac", ike.ModeTransport, true},
		{"aes128gcm16", ike.ModeTransport, false},
		{"aes256gcm16-esn", ike.ModeTunnel, true},
		{"chacha20poly1305", ike.ModeTunnel, false},
		{"chacha20poly1305", ike.ModeTransport, true},
		{"aes256-sha256", ike.ModeTunnel, false},
		{"aes128ctr-sha384-esn", ike.ModeTransport, false},
	}
	l := newLab(t)
	a := start(t, l.a, addrA, netip.PrefixFrom(innerA, 32))
	b := start(t, l.b, addrB, netip.PrefixFrom(innerB, 32))
	for _, c := range cases {
		name := c.esp + "/" + c.mode.String()
		if c.encap {
			name += "/udp"
		}
		t.Run(name, func(t *testing.T) {
			beforeA, beforeB := a.dp.Status(), b.dp.Status()
			var lts, rts []netip.Prefix // transport: the IKE addresses
			srcB, srcA := addrB, addrA
			if c.mode == ike.ModeTunnel {
				lts, rts = []netip.Prefix{netip.PrefixFrom(innerA, 32)}, []netip.Prefix{netip.PrefixFrom(innerB, 32)}
				srcA, srcB = innerA, innerB
			}
			if err := b.ep.Respond(peerConfig("b.lab.example", "a.lab.example", c.esp, c.mode, false, rts, lts, ike.WithDataPlane(nil, b.dp))); err != nil {
				t.Fatal(err)
			}
			sa, err := a.ep.Initiate(ctx(t), peerConfig("a.lab.example", "b.lab.example", c.esp, c.mode, c.encap, lts, rts, ike.WithDataPlane(nil, a.dp)), netip.AddrPortFrom(addrB, ike.DefaultPort))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { sa.Delete(ctx(t)) })
			out, _ := sa.Children()[0].Infos()
			if out.Mode != c.mode || (out.Encap == ike.EncapUDP) != c.encap {
				t.Fatalf("negotiated %+v", out)
			}
			ping(t, l.a, srcB, 3, a.dp, b.dp)
			ping(t, l.b, srcA, 3, a.dp, b.dp)
			charonlab.TCPBothWays(t, l.a, l.b, srcB, 1<<20)
			charonlab.TCPBothWays(t, l.b, l.a, srcA, 256<<10)
			checkCounters(t, "a", a.dp, beforeA)
			checkCounters(t, "b", b.dp, beforeB)
			if err := sa.Delete(ctx(t)); err != nil {
				t.Fatal(err)
			}
			for _, n := range []*node{a, b} {
				deadline := time.Now().Add(5 * time.Second)
				for len(n.dp.Status().SAs) != 0 {
					if time.Now().After(deadline) {
						t.Fatalf("SAs left after delete: %+v", n.dp.Status().SAs)
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
		})
	}
}

// TestEspyToEspyIPv6 runs IKE and ESP over IPv6 between the namespaces:
// transport mode (plain ESP on the IPv6 raw socket, inner IPv6) and tunnel
// mode carrying IPv6 inside UDP-encapsulated ESP.
func TestEspyToEspyIPv6(t *testing.T) {
	l := newLab(t)
	outerA, outerB := netip.MustParseAddr("2001:db8::a"), netip.MustParseAddr("2001:db8::b")
	in6A, in6B := netip.MustParseAddr("2001:db8:a::1"), netip.MustParseAddr("2001:db8:b::1")
	run(t, "ip", "-n", l.a, "addr", "add", "2001:db8::a/64", "dev", "eeta"+l.tag, "nodad")
	run(t, "ip", "-n", l.b, "addr", "add", "2001:db8::b/64", "dev", "eetb"+l.tag, "nodad")
	a := start(t, l.a, outerA, netip.PrefixFrom(in6A, 128))
	b := start(t, l.b, outerB, netip.PrefixFrom(in6B, 128))
	for _, c := range []struct {
		esp   string
		mode  ike.Mode
		encap bool
	}{
		{"null-sha256", ike.ModeTransport, false},
		{"aes128gcm16", ike.ModeTunnel, true},
	} {
		t.Run(c.mode.String(), func(t *testing.T) {
			before := [2]Status{a.dp.Status(), b.dp.Status()}
			var lts, rts []netip.Prefix
			srcA, srcB := outerA, outerB
			if c.mode == ike.ModeTunnel {
				lts, rts = []netip.Prefix{netip.PrefixFrom(in6A, 128)}, []netip.Prefix{netip.PrefixFrom(in6B, 128)}
				srcA, srcB = in6A, in6B
			}
			if err := b.ep.Respond(peerConfig("b.lab.example", "a.lab.example", c.esp, c.mode, false, rts, lts, ike.WithDataPlane(nil, b.dp))); err != nil {
				t.Fatal(err)
			}
			sa, err := a.ep.Initiate(ctx(t), peerConfig("a.lab.example", "b.lab.example", c.esp, c.mode, c.encap, lts, rts, ike.WithDataPlane(nil, a.dp)), netip.AddrPortFrom(outerB, ike.DefaultPort))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { sa.Delete(ctx(t)) })
			if out, _ := sa.Children()[0].Infos(); out.Dst != outerB || (out.Encap == ike.EncapUDP) != c.encap {
				t.Fatalf("negotiated %+v", out)
			}
			ping(t, l.a, srcB, 2, a.dp, b.dp)
			ping(t, l.b, srcA, 2, a.dp, b.dp)
			charonlab.TCPBothWays(t, l.a, l.b, srcB, 256<<10)
			checkCounters(t, "a", a.dp, before[0])
			checkCounters(t, "b", b.dp, before[1])
			if err := sa.Delete(ctx(t)); err != nil {
				t.Fatal(err)
			}
		})
	}
}
