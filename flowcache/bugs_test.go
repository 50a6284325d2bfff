package flowcache_test

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/espy-dpi/espy/flowcache"
	"github.com/espy-dpi/espy/heuristics"
)

// Regression tests for the bugs FC-1 to FC-4, found by review and fixed:
// each states the expected behaviour.

// FC-1: Register never sets Flow.Last (nor First) for an SA with no packets
// yet, so Last is 0 and the next Sweep, whatever its time, expires the
// registration: cache.go Register stores a zero Flow, and Sweep compares
// now-f.Last (≈ now) with IdleTimeout. A registered SA should live
// IdleTimeout after its registration.
func TestFixedRegisterExpiresAtOnce(t *testing.T) {
	c := newCache(t, flowcache.Config{Shards: 1, Capacity: 8, PendingCapacity: 8}, nil)
	k := flowcache.NewKey(peerA, peerB, 0xfc01)
	c.Register(k, true, 16, 0, t0)
	if n := c.Sweep(t0 + time.Second.Nanoseconds()); n != 0 {
		t.Errorf("Sweep one second after Register dropped %d flows", n)
	}
	if _, ok := c.Lookup(k); !ok {
		t.Error("registered SA expired one second after registration (IdleTimeout 10 min)")
	}
}

// FC-2: Register of a flow that is pending moves it into the decided table
// without making room (cache.go Register calls storeDecided only for keys
// in neither table), so the decided table grows past Capacity by one for
// every SA registered after its first packet.
func TestFixedRegisterPendingExceedsCapacity(t *testing.T) {
	const capacity = 4
	c := newCache(t, flowcache.Config{Shards: 1, Capacity: capacity, PendingCapacity: 64}, nil)
	r := rand.New(rand.NewPCG(1, 1))
	for i := 0; i < 20; i++ {
		fs := flowSpec{src: peerA, dst: peerB, spi: 0xfc0200 + uint32(i)}
		p := garbage(t, fs, r, 1)
		c.Process(&p, 100, t0) // pending
		c.Register(flowcache.NewKey(fs.src, fs.dst, fs.spi), false, 0, 0, t0)
	}
	if st := c.Stats(); st.Decided > capacity {
		t.Errorf("%d decided flows in a cache of capacity %d: %+v", st.Decided, capacity, st)
	}
}

// FC-3: the pending pool evicts the entry at its ring position even when
// other slots are free (pending.go insert takes slot p.next whether or not
// the pool is full), so an undecided flow is dropped after PendingCapacity
// insertions however few flows are pending. The doc says "inserting into a
// full pool evicts the oldest entry".
func TestFixedPendingEvictsWhenNotFull(t *testing.T) {
	c := newCache(t, flowcache.Config{Shards: 1, Capacity: 64, PendingCapacity: 4}, nil)
	r := rand.New(rand.NewPCG(2, 2))
	slow := flowSpec{src: peerA6, dst: peerB6, spi: 0xfc03}
	p := garbage(t, slow, r, 1)
	c.Process(&p, 100, t0) // one pending flow
	esp := synthESP(t, 1, nullFlow)
	for i := 0; i < 8; i++ {
		// Flows that decide on their first packet: the pool never holds
		// more than two entries.
		fs := flowSpec{src: peerA, dst: peerB, spi: 0xfc0300 + uint32(i)}
		decide(t, c, fs, esp, 1, t0+int64(i)*ms, heuristics.Null)
	}
	if _, ok := c.Lookup(flowcache.NewKey(slow.src, slow.dst, slow.spi)); !ok {
		t.Errorf("pending flow evicted from a pool of 4 that never held more than 2: %+v", c.Stats())
	}
}

// FC-4 (a heuristics bug, seen through the cache): heuristics/monitor.go
// Watch withdraws a verdict as SPIReuse on a single packet with sequence
// number <= 16 once the highest one seen is >= 4096, before and without any
// other check: the packet need not parse, and the receiver itself would
// drop it as a replay. One spoofed packet thus revokes any long-lived null
// flow, and two (seq 5000, then seq 1; a known SA's highSeq follows every
// packet) revoke an SA registered by IKE, whose verdict is then lost to the
// heuristics. This contradicts the package doc ("a few injected junk
// packets cannot flip a flow") and the Register contract. Expected: a
// restart is confirmed by more than one packet (e.g. several increasing
// low sequence numbers) before the verdict is withdrawn.
func TestFixedOneSpoofedPacketRevokes(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 4))
	t.Run("known-sa", func(t *testing.T) {
		rec := &recorder{}
		c := newCache(t, flowcache.Config{Shards: 1, Capacity: 8, PendingCapacity: 8}, rec)
		fs := flowSpec{src: peerA, dst: peerB, spi: 0xfc04}
		c.Register(flowcache.NewKey(fs.src, fs.dst, fs.spi), true, 16, 0, t0)
		for i, seq := range []uint32{5000, 1} {
			p := garbage(t, fs, r, seq)
			c.Process(&p, 100, t0+int64(i)*ms)
		}
		if n := rec.count(flowcache.EventRevoked, nil); n != 0 {
			t.Errorf("two spoofed packets revoked a registered SA: %+v", rec.events[len(rec.events)-1])
		}
	})
	t.Run("heuristic-null", func(t *testing.T) {
		rec := &recorder{}
		c := newCache(t, flowcache.Config{Shards: 1, Capacity: 8, PendingCapacity: 8}, rec)
		fs := flowSpec{src: peerA, dst: peerB, spi: 0xfc05}
		_, seq := decide(t, c, fs, synthESP(t, 1, nullFlow), 5000, t0, heuristics.Null)
		p := garbage(t, fs, r, 1)
		c.Process(&p, 100, t0+time.Second.Nanoseconds())
		if n := rec.count(flowcache.EventRevoked, nil); n != 0 {
			t.Errorf("one spoofed packet (seq 1 after %d) revoked a null flow", seq-1)
		}
	})
}
