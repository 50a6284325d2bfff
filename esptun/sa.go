package esptun

import (
	"fmt"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/espy-dpi/espy/esp"
	"github.com/espy-dpi/espy/ike"
	"github.com/espy-dpi/espy/ike/message"
)

// outSA is an installed outbound SA; only the TUN reader seals with it.
type outSA struct {
	info ike.SAInfo
	o    *esp.Outbound
	mode esp.Mode
	to   netip.AddrPort // UDP destination
	raw  unix.Sockaddr  // plain ESP destination
	// active is false for a rekeyed SA until the peer is known to have
	// its inbound half: its paired inbound SA received a packet, or the
	// SA it replaces is gone.
	active atomic.Bool
	lim    *limiter
}

// inSA is an installed inbound SA; only the goroutine reading its
// encapsulation (NAT-T or raw socket) opens with it.
type inSA struct {
	info ike.SAInfo
	in   *esp.Inbound
	mode esp.Mode
	pair atomic.Pointer[outSA]
	lim  *limiter
	// retire ends the grace of an SA removed after a rekey, and
	// removedAt holds its counters at the removal (already in
	// DataPlane.removed); both guarded by DataPlane.mu.
	retire    *time.Timer
	removedAt esp.Counters
}

func espConfig(k ike.KeyedSA, window int) esp.Config {
	return esp.Config{SPI: k.SPI, EncrID: k.EncrID, EncrKey: k.EncrKey, IntegID: k.IntegID, IntegKey: k.IntegKey, ESN: k.ESN, ReplayWindow: window}
}

func espMode(m ike.Mode) esp.Mode {
	if m == ike.ModeTransport {
		return esp.Transport
	}
	return esp.Tunnel
}

func newOutSA(k ike.KeyedSA) (*outSA, error) {
	o, err := esp.NewOutbound(espConfig(k, 0))
	if err != nil {
		return nil, fmt.Errorf("esptun: outbound SA %08x: %w", k.SPI, err)
	}
	seqSoft, seqHard := uint64(seqSoft32), uint64(seqHard32)
	if k.ESN {
		seqSoft, seqHard = seqSoft64, seqHard64
	}
	s := &outSA{info: k.SAInfo, o: o, mode: espMode(k.Mode), lim: newLimiter(k.Limits, seqSoft, seqHard)}
	if k.Encap == ike.EncapUDP {
		s.to = netip.AddrPortFrom(k.Dst, k.DstPort)
	} else if k.Dst.Is4() {
		s.raw = &unix.SockaddrInet4{Addr: k.Dst.As4()}
	} else {
		s.raw = &unix.SockaddrInet6{Addr: k.Dst.As16()}
	}
	return s, nil
}

func newInSA(k ike.KeyedSA, window int) (*inSA, error) {
	in, err := esp.NewInbound(espConfig(k, window))
	if err != nil {
		return nil, fmt.Errorf("esptun: inbound SA %08x: %w", k.SPI, err)
	}
	// The sequence numbers are the peer's to keep from running out.
	return &inSA{info: k.SAInfo, in: in, mode: espMode(k.Mode), lim: newLimiter(k.Limits, 0, 0)}, nil
}

// sameTraffic reports whether two outbound SAs carry the same selectors:
// one replaces the other in a rekey.
func sameTraffic(a, b *ike.SAInfo) bool {
	eq := func(x, y []message.Selector) bool {
		return slices.EqualFunc(x, y, func(p, q message.Selector) bool {
			return p.TSType == q.TSType && p.IPProto == q.IPProto && p.StartPort == q.StartPort &&
				p.EndPort == q.EndPort && p.StartAddr == q.StartAddr && p.EndAddr == q.EndAddr
		})
	}
	return a.Dst == b.Dst && eq(a.LocalTS, b.LocalTS) && eq(a.RemoteTS, b.RemoteTS)
}
