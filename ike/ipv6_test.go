package ike

import (
	"context"
	"net"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/espy-dpi/espy/ike/message"
)

// TestIPv6Transport establishes over ::1 in transport mode with IPv6
// selectors from 2001:db8::/32 on one side and the default (the IKE
// address) on the other.
func TestIPv6Transport(t *testing.T) {
	lo6 := netip.MustParseAddr("::1")
	if c, err := net.ListenUDP("udp6", net.UDPAddrFromAddrPort(netip.AddrPortFrom(lo6, 0))); err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	} else {
		c.Close()
	}
	open := func() *Endpoint {
		e, err := Listen(ListenConfig{Addr: lo6, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Close() })
		return e
	}
	p := &pair{ini: open(), resp: open(), iniReg: &recorder{}, respReg: &recorder{}}
	p.iniCfg, p.respCfg = configs("aes256gcm16-prfsha384-ecp384", "null-sha384", p.iniReg, p.respReg)
	p.iniCfg.Mode, p.respCfg.Mode = ModeTransport, ModeTransport
	p.iniCfg.LocalTS, p.iniCfg.RemoteTS = nil, nil
	p.respCfg.LocalTS = []message.Selector{PrefixSelector(netip.MustParsePrefix("2001:db8::/32")), hostSelector(lo6)}
	p.respCfg.RemoteTS = nil
	_, natt := p.resp.Addrs()
	p.iniCfg.RemoteNATPort = natt.Port()
	if err := p.resp.Respond(p.respCfg); err != nil {
		t.Fatal(err)
	}
	ike, _ := p.resp.Addrs()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sa, err := p.ini.Initiate(ctx, p.iniCfg, ike)
	if err != nil {
		t.Fatal(err)
	}
	i, _ := checkEstablished(t, p, sa)
	if i.Mode != ModeTransport {
		t.Fatalf("mode %v", i.Mode)
	}
	out, _ := i.Infos()
	if out.Src != lo6 || out.Dst != lo6 || out.Encap != EncapNone || !out.Null || out.ICVLen != 24 {
		t.Fatalf("registered %+v", out)
	}
	// The initiator asked for its own address on both ends; the responder
	// narrowed to the ::1 host selector.
	if len(i.RemoteTS) != 1 || i.RemoteTS[0].StartAddr != lo6 || i.RemoteTS[0].EndAddr != lo6 {
		t.Fatalf("TSr %+v", i.RemoteTS)
	}

	// Transport on one side only is refused.
	p.iniCfg.Mode = ModeTunnel
	if _, err := p.ini.Initiate(ctx, p.iniCfg, ike); err == nil {
		t.Fatal("tunnel accepted by a transport-only responder")
	}
}

func TestNarrow(t *testing.T) {
	sel := func(p string, proto uint8, lo, hi uint16) message.Selector {
		s := PrefixSelector(netip.MustParsePrefix(p))
		s.IPProto, s.StartPort, s.EndPort = proto, lo, hi
		return s
	}
	for _, c := range []struct {
		name           string
		proposed, ours []message.Selector
		want           []message.Selector
	}{
		{"subset", []message.Selector{sel("198.51.100.7/32", 6, 80, 80)}, []message.Selector{sel("198.51.100.0/24", 0, 0, 65535)}, []message.Selector{sel("198.51.100.7/32", 6, 80, 80)}},
		{"superset", []message.Selector{sel("0.0.0.0/0", 0, 0, 65535)}, []message.Selector{sel("198.51.100.0/24", 17, 500, 4500)}, []message.Selector{sel("198.51.100.0/24", 17, 500, 4500)}},
		{"protocol clash", []message.Selector{sel("198.51.100.0/24", 6, 0, 65535)}, []message.Selector{sel("198.51.100.0/24", 17, 0, 65535)}, nil},
		{"disjoint ports", []message.Selector{sel("198.51.100.0/24", 0, 1, 10)}, []message.Selector{sel("198.51.100.0/24", 0, 11, 20)}, nil},
		{"families", []message.Selector{sel("2001:db8::/32", 0, 0, 65535)}, []message.Selector{sel("198.51.100.0/24", 0, 0, 65535)}, nil},
		{"partial overlap", []message.Selector{sel("198.51.100.128/25", 0, 0, 65535)}, []message.Selector{sel("198.51.100.0/24", 0, 0, 65535), sel("198.51.100.192/26", 0, 0, 65535)}, []message.Selector{sel("198.51.100.128/25", 0, 0, 65535)}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := narrow(c.proposed, c.ours)
			if len(got) != len(c.want) {
				t.Fatalf("got %+v, want %+v", got, c.want)
			}
			for i := range got {
				if !reflect.DeepEqual(got[i], c.want[i]) {
					t.Fatalf("got %+v, want %+v", got[i], c.want[i])
				}
			}
		})
	}
}
