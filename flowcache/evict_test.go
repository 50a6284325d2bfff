package flowcache_test

import (
	"testing"
	"time"

	"github.com/espy-dpi/espy/flowcache"
	"github.com/espy-dpi/espy/heuristics"
)

const sec = int64(time.Second)

// TestEvictionRank: in a shard no larger than the eviction sample, the
// victim is exactly the lowest ranked flow: flows never seen after their
// decision first, then by how often they were seen (Process or Touch) within
// the last 10 s, then least recently seen.
func TestEvictionRank(t *testing.T) {
	// Four flows decided at t0, t0+1s, t0+2s, t0+3s; then the case's
	// sightings; then a fifth flow at now needs the room.
	type sighting struct {
		flow  int
		at    int64 // after t0
		times int   // Touch calls
	}
	for _, tc := range []struct {
		name   string
		seen   []sighting
		now    int64 // after t0
		victim int
	}{
		{"one-packet flows go least recently seen first", nil, 20 * sec, 0},
		{"a flow seen again outranks newer one-packet flows", []sighting{{0, sec / 2, 1}}, 4 * sec, 1},
		{"seen by Process as by Touch", []sighting{{0, sec / 2, -1}}, 4 * sec, 1},
		{"sightings older than 10 s no longer count", []sighting{{0, sec / 2, 1}}, 11 * sec, 0},
		{"all seen again: least recently seen", []sighting{{0, 5 * sec, 1}, {1, 6 * sec, 1}, {2, 7 * sec, 1}, {3, 8 * sec, 1}}, 9 * sec, 0},
		{"more often seen outranks more recently seen", []sighting{{0, 5 * sec, 4}, {1, 6 * sec, 2}, {2, 7 * sec, 2}, {3, 8 * sec, 1}}, 9 * sec, 3},
		{"same magnitude of sightings: least recently seen", []sighting{{0, 5 * sec, 3}, {1, 6 * sec, 2}, {2, 7 * sec, 4}, {3, 8 * sec, 4}}, 9 * sec, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			c := newCache(t, flowcache.Config{Shards: 1, Capacity: 4, PendingCapacity: 8}, rec)
			esp := synthESP(t, 1, nullFlow)
			fss := make([]flowSpec, 5)
			next := make([]uint32, 5)
			for i := range fss {
				fss[i] = flowSpec{src: peerA, dst: peerB, spi: 0x4000 + uint32(i)}
			}
			for i := range 4 {
				_, next[i] = decide(t, c, fss[i], esp, 1, t0+int64(i)*sec, heuristics.Null)
			}
			for _, s := range tc.seen {
				k := flowcache.NewKey(fss[s.flow].src, fss[s.flow].dst, fss[s.flow].spi)
				if s.times < 0 {
					p := fss[s.flow].pkt(t, esp[0], next[s.flow])
					c.Process(&p, 100, t0+s.at)
					continue
				}
				for range s.times {
					if !c.Touch(k, t0+s.at) {
						t.Fatalf("flow %d not decided", s.flow)
					}
				}
			}
			decide(t, c, fss[4], esp, 1, t0+tc.now, heuristics.Null)
			var evicted []uint32
			rec.count(flowcache.EventExpired, func(e flowcache.Event) bool {
				evicted = append(evicted, e.Key.SPI)
				return true
			})
			if want := fss[tc.victim].spi; len(evicted) != 1 || evicted[0] != want {
				t.Errorf("evicted SPIs %#x, want [%#x]", evicted, want)
			}
		})
	}
}

// TestFloodKeepsLiveFlow: a decided flow that the inline fast path handles
// (no Process calls, a Touch every 100 ms) stays while a flood of new
// decided flows turns the table over ten times per Touch interval, so that
// every flood flow is more recently seen than the live flow's last Touch
// (pure least-recently-seen eviction takes the live flow at once). It also
// holds when every flood SPI is seen twice, as long as the live flow has
// been seen more often. The table stays within its capacity and reports
// every eviction.
func TestFloodKeepsLiveFlow(t *testing.T) {
	const (
		capacity = 256
		flood    = 40 * capacity
		perTouch = 10 * capacity // flood flows decided per 100 ms
	)
	for _, tc := range []struct {
		name     string
		packets  int // per flood SPI
		liveRefs int // Touches of the live flow before the flood
	}{
		{"one packet per SPI", 1, 0},
		{"two packets per SPI", 2, 2},
		{"three packets per SPI", 3, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			c := newCache(t, flowcache.Config{Shards: 4, Capacity: capacity, PendingCapacity: 64}, rec)
			esp := synthESP(t, 1, nullFlow)
			live := flowSpec{src: peerA, dst: peerB, spi: 0x5000}
			decide(t, c, live, esp, 1, t0, heuristics.Null)
			liveKey := flowcache.NewKey(live.src, live.dst, live.spi)
			now := t0
			for range tc.liveRefs {
				now += 100 * ms
				c.Touch(liveKey, now)
			}
			fs := flowSpec{src: peerA6, dst: peerB6}
			p := fs.pkt(t, esp[0], 1)
			for i := range flood {
				if i%perTouch == 0 {
					// The daemon's look at the fast path's seen bytes.
					now += 100 * ms
					if !c.Touch(liveKey, now) {
						t.Fatalf("live flow evicted after %d flood flows", i)
					}
				}
				step := 100 * ms / perTouch
				setSPI(&p, 0x10000+uint32(i))
				setSeq(&p, 1)
				if r := c.Process(&p, len(p.ESP), now+int64(i%perTouch)*step); r.Event != flowcache.EventDecided {
					t.Fatalf("flood flow %d: %+v, want decided on its first packet", i, r)
				}
				for j := 1; j < tc.packets; j++ {
					setSeq(&p, 1+uint32(j))
					c.Process(&p, len(p.ESP), now+int64(i%perTouch)*step)
				}
				if st := c.Stats(); st.Decided > capacity {
					t.Fatalf("%d decided flows, capacity %d", st.Decided, capacity)
				}
			}
			if n := rec.count(flowcache.EventExpired, func(e flowcache.Event) bool { return e.Key == liveKey }); n != 0 {
				t.Errorf("live flow evicted %d times", n)
			}
			st := c.Stats()
			if n := rec.count(flowcache.EventExpired, func(e flowcache.Event) bool { return e.Evicted }); uint64(n) != st.Evicted || st.Evicted != uint64(flood+1-st.Decided) {
				t.Errorf("%d eviction events, stats %+v", n, st)
			}
		})
	}
}

// TestEvictionBounded: a table whose every flow is busy (seen more often
// than any flood) still makes room for each new flow, and flows that went
// idle for longer than sightings count are evicted before new one-packet
// flows: sightings do not let flows hold the table for good.
func TestEvictionBounded(t *testing.T) {
	const capacity = 64
	rec := &recorder{}
	c := newCache(t, flowcache.Config{Shards: 1, Capacity: capacity, PendingCapacity: 64}, rec)
	now := t0
	busy := map[flowcache.Key]bool{}
	for i := range 4 * capacity {
		now += ms
		k := flowcache.NewKey(peerA6, peerB6, 0x7000+uint32(i))
		c.Register(k, true, 12, 0, now)
		for range 300 {
			c.Touch(k, now)
		}
		busy[k] = true
		if st := c.Stats(); st.Decided > capacity {
			t.Fatalf("%d decided flows, capacity %d", st.Decided, capacity)
		}
	}
	if st := c.Stats(); st.Evicted != 3*capacity || st.Decided != capacity {
		t.Fatalf("busy table: %+v, want %d evicted", st, 3*capacity)
	}
	// The busy flows go idle; 11 s later one-packet flows arrive. They
	// replace the idle flows, not each other (but for the few evictions
	// whose 8 samples are all new flows: about capacity/9).
	now += 11 * sec
	rec.reset()
	fresh := map[flowcache.Key]bool{}
	for i := range capacity {
		k := flowcache.NewKey(peerA, peerB, 0x9000+uint32(i))
		c.Register(k, true, 12, 0, now)
		fresh[k] = true
	}
	var freshGone, busyGone int
	rec.count(flowcache.EventExpired, func(e flowcache.Event) bool {
		if fresh[e.Key] {
			freshGone++
		}
		if busy[e.Key] {
			busyGone++
		}
		return true
	})
	if freshGone > capacity/4 || busyGone < capacity*3/4 {
		t.Errorf("%d one-packet flows arrived: %d of them and %d idle busy flows evicted", capacity, freshGone, busyGone)
	}
}

// BenchmarkProcessNewFlowEvicting is a new flow decided on its first packet
// into a full table, which evicts one (victim compares 8 sampled entries).
// It allocates nothing.
func BenchmarkProcessNewFlowEvicting(b *testing.B) {
	c := newCache(b, flowcache.Config{Capacity: 1 << 16, Reserve: 1 << 16, PendingCapacity: 64}, nil)
	fill(c, 1<<16)
	p := flowSpec{src: peerA6, dst: peerB6}.pkt(b, synthESP(b, 1, nullFlow)[0], 1)
	spi, now := uint32(0x100), t0
	b.ReportAllocs()
	for b.Loop() {
		spi++
		now += 1000
		setSPI(&p, spi)
		if r := c.Process(&p, len(p.ESP), now); r.Event != flowcache.EventDecided {
			b.Fatalf("%+v, want decided", r)
		}
	}
	if st := c.Stats(); st.Evicted == 0 {
		b.Fatal("nothing evicted")
	}
}

// TestEvictAllocs: deciding a new flow into a full table allocates nothing.
func TestEvictAllocs(t *testing.T) {
	c := newCache(t, flowcache.Config{Shards: 4, Capacity: 256, PendingCapacity: 64}, nil)
	fill(c, 256)
	p := flowSpec{src: peerA6, dst: peerB6}.pkt(t, synthESP(t, 1, nullFlow)[0], 1)
	spi, now := uint32(0x100), t0
	if a := testing.AllocsPerRun(1000, func() {
		spi++
		now += 1000
		setSPI(&p, spi)
		c.Process(&p, len(p.ESP), now)
	}); a != 0 {
		t.Errorf("%v allocations per evicting decision", a)
	}
	if st := c.Stats(); st.Evicted < 1000 {
		t.Errorf("%d evicted, want at least 1000", st.Evicted)
	}
}
