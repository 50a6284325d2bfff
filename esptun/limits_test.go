package esptun

import (
	"errors"
	"log/slog"
	"net/netip"
	"testing"

	"github.com/espy-dpi/espy/esp"
	"github.com/espy-dpi/espy/ike"
	"github.com/espy-dpi/espy/ike/message"
)

type limitEvent struct {
	spi           uint32
	inbound, hard bool
	at            uint64 // packets processed when it fired
}

// limitSA returns a keyed SA for the limit tests (ESP-NULL, so that the
// test's own esp.Outbound produces what the inbound SA opens).
func limitSA(inbound, esn bool, l ike.Limits) ike.KeyedSA {
	return ike.KeyedSA{SAInfo: ike.SAInfo{Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("192.0.2.2"), SPI: 0x4242,
		Inbound: inbound, ESN: esn, EncrID: message.ENCR_NULL, IntegID: message.AUTH_HMAC_SHA2_256_128, Mode: ike.ModeTunnel},
		IntegKey: make([]byte, 32), Limits: l}
}

// TestLimits checks that each soft and hard limit fires once, at the
// packet that reaches it, in both directions, and that after the hard one
// the SA neither seals nor opens.
func TestLimits(t *testing.T) {
	const payloadLen = 100
	cases := []struct {
		name      string
		lim       ike.Limits
		esn       bool
		startSeq  uint64 // outbound: last sequence number before the test
		inbound   bool
		soft      uint64 // packet at which the soft limit fires; 0: never
		hard      uint64 // likewise the hard limit; packets after it are refused
		sendCount uint64
	}{
		{name: "packets", lim: ike.Limits{SoftPackets: 5, HardPackets: 10}, soft: 5, hard: 10, sendCount: 15},
		{name: "packets in", lim: ike.Limits{SoftPackets: 5, HardPackets: 10}, inbound: true, soft: 5, hard: 10, sendCount: 15},
		{name: "bytes", lim: ike.Limits{SoftBytes: 250, HardBytes: 500}, soft: 3, hard: 5, sendCount: 8},
		{name: "bytes in", lim: ike.Limits{SoftBytes: 250, HardBytes: 500}, inbound: true, soft: 3, hard: 5, sendCount: 8},
		{name: "soft only", lim: ike.Limits{SoftPackets: 2}, soft: 2, sendCount: 6},
		{name: "hard only", lim: ike.Limits{HardBytes: 300}, hard: 3, sendCount: 6},
		{name: "off", sendCount: 6},
		{name: "bytes before packets", lim: ike.Limits{SoftPackets: 50, SoftBytes: 200, HardPackets: 100}, soft: 2, sendCount: 4},
		{name: "sequence soft", startSeq: seqSoft32 - 3, soft: 3, sendCount: 5},
		// Started past the soft limit, which fires at once.
		{name: "sequence hard", startSeq: seqHard32 - 3, soft: 1, hard: 3, sendCount: 5},
		{name: "sequence soft esn", esn: true, startSeq: seqSoft64 - 2, soft: 2, sendCount: 5},
		{name: "sequence hard esn", esn: true, startSeq: seqHard64 - 3, soft: 1, hard: 3, sendCount: 5},
		{name: "esn passes 2^32", esn: true, startSeq: seqHard32 - 3, sendCount: 10},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var events []limitEvent
			var n uint64
			d := &DataPlane{log: slog.New(slog.DiscardHandler)}
			d.SetLimitHandler(func(spi uint32, inbound, hard bool) {
				events = append(events, limitEvent{spi, inbound, hard, n})
			})
			k := limitSA(c.inbound, c.esn, c.lim)
			payload := make([]byte, payloadLen)
			buf := make([]byte, 0, 512)
			var send func() error
			if c.inbound {
				in, err := newInSA(k, 0)
				if err != nil {
					t.Fatal(err)
				}
				peer, err := esp.NewOutbound(espConfig(k, 0))
				if err != nil {
					t.Fatal(err)
				}
				send = func() error {
					pkt, err := peer.Seal(buf[:0], payload, esp.ProtoIPv4)
					if err != nil {
						return err
					}
					_, _, err = d.open(in, pkt)
					return err
				}
			} else {
				out, err := newOutSA(k)
				if err != nil {
					t.Fatal(err)
				}
				out.o.SetSeq(c.startSeq)
				send = func() error {
					_, err := d.seal(out, buf[:0], payload, esp.ProtoIPv4)
					return err
				}
			}
			sent := uint64(0)
			for n = 1; n <= c.sendCount; n++ {
				err := send()
				refused := c.hard != 0 && n > c.hard
				if refused != (err != nil) {
					t.Fatalf("packet %d: err %v, want refused %v", n, err, refused)
				}
				if err != nil && !errors.Is(err, errExpired) {
					t.Fatalf("packet %d: %v, want errExpired", n, err)
				}
				if err == nil {
					sent++
				}
			}
			var want []limitEvent
			if c.soft != 0 {
				want = append(want, limitEvent{0x4242, c.inbound, false, c.soft})
			}
			if c.hard != 0 {
				want = append(want, limitEvent{0x4242, c.inbound, true, c.hard})
			}
			if len(events) != len(want) {
				t.Fatalf("events %+v, want %+v", events, want)
			}
			for i := range want {
				if events[i] != want[i] {
					t.Fatalf("events %+v, want %+v", events, want)
				}
			}
			if c.hard != 0 && sent != c.hard {
				t.Fatalf("%d packets passed, want %d", sent, c.hard)
			}
		})
	}
}

// TestLimitCheckNoAllocs proves that counting against the limits costs
// no allocation per packet, including the packet that fires a limit.
func TestLimitCheckNoAllocs(t *testing.T) {
	d := &DataPlane{log: slog.New(slog.DiscardHandler)}
	fired := 0
	d.SetLimitHandler(func(uint32, bool, bool) { fired++ })
	out, err := newOutSA(limitSA(false, false, ike.Limits{SoftPackets: 300, HardPackets: 1 << 40, SoftBytes: 1 << 40, HardBytes: 1 << 41}))
	if err != nil {
		t.Fatal(err)
	}
	payload := make([]byte, 100)
	buf := make([]byte, 0, 512)
	if n := testing.AllocsPerRun(1000, func() {
		if _, err := d.seal(out, buf[:0], payload, esp.ProtoIPv4); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("seal with limits: %v allocations per packet", n)
	}
	if fired != 1 {
		t.Errorf("soft limit fired %d times in 1001 packets, want 1", fired)
	}
}
