package ike

import (
	"net/netip"
	"testing"
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
