package ike

import (
	"log/slog"
	"net/netip"
	"testing"

	"github.com/espy-dpi/espy/ike/message"
)

// TestEnqueueFullNoAlloc checks that a full queue drops (counted) without
// copying the datagram: a flood that outpaces the workers costs no heap.
func TestEnqueueFullNoAlloc(t *testing.T) {
	e := &Endpoint{work: make(chan job, 1)}
	pkt := initRequestFor(t)
	from := netip.MustParseAddrPort("198.51.100.7:500")
	e.enqueue(pkt, from, false)
	if len(e.work) != 1 || e.queueDrops.Load() != 0 {
		t.Fatalf("first message: queued %d, drops %d", len(e.work), e.queueDrops.Load())
	}
	if j := <-e.work; &j.pkt[0] == &pkt[0] {
		t.Fatal("queued message shares the read buffer")
	}
	e.enqueue(pkt, from, false)
	allocs := testing.AllocsPerRun(1000, func() { e.enqueue(pkt, from, false) })
	if allocs != 0 {
		t.Errorf("enqueue on a full queue: %v allocations, want 0", allocs)
	}
	if d := e.queueDrops.Load(); d != 1001 {
		t.Errorf("%d drops counted, want 1001", d)
	}
}

// TestEnqueueResponseInline checks that a response which is not a
// fragment reaches the exchange waiting for it without a worker (the
// endpoint here has none), in a copy of the read buffer, while requests
// and fragmented responses still go to the queue.
func TestEnqueueResponseInline(t *testing.T) {
	const spi = 0x0102030405060708
	msg := func(flags message.Flags, first message.PayloadType) []byte {
		h := message.Header{SPIi: spi, SPIr: 9, NextPayload: first, Exchange: message.INFORMATIONAL, Flags: flags, MessageID: 3, Length: message.HeaderLen}
		return message.AppendHeader(nil, &h)
	}
	tests := []struct {
		name   string
		pkt    []byte
		inline bool
	}{
		{"response", msg(message.FlagResponse, message.PayloadSK), true},
		{"empty response", msg(message.FlagResponse, message.PayloadNone), true},
		{"fragmented response", msg(message.FlagResponse, message.PayloadSKF), false},
		{"request", msg(message.FlagInitiator, message.PayloadSK), false},
		{"short", []byte{1, 2, 3}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sa := &IKESA{respCh: make(chan inbound, 1)}
			e := &Endpoint{work: make(chan job, 1), sas: map[uint64]*IKESA{spi: sa}, log: slog.New(slog.DiscardHandler)}
			from := netip.MustParseAddrPort("198.51.100.7:500")
			e.enqueue(tt.pkt, from, false)
			if got := len(sa.respCh) == 1; got != tt.inline {
				t.Fatalf("delivered inline: %v, want %v", got, tt.inline)
			}
			if got := len(e.work) == 1; got == tt.inline {
				t.Fatalf("queued: %v, want %v", got, !tt.inline)
			}
			if tt.inline {
				in := <-sa.respCh
				if &in.pkt[0] == &tt.pkt[0] || in.from != from || in.hdr.MessageID != 3 {
					t.Fatalf("delivered %+v: want a copy from %v with message ID 3", in, from)
				}
			}
		})
	}
}
