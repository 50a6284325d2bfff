package flowcache

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/espy-dpi/espy/heuristics"
	"github.com/espy-dpi/espy/packet"
)

// Config sizes the cache. The zero value of a field means its default.
type Config struct {
	// Capacity bounds decided flows. Default 1,000,000. (At most Shards
	// more may be held for a moment; see makeRoom.)
	Capacity int
	// PendingCapacity bounds undecided flows. Default 65,536.
	PendingCapacity int
	// Reserve is how many decided flows to allocate room for up front
	// (at most Capacity; default 0: the table grows by doubling). Growing
	// copies every entry and rehashes the index: in a fresh daemon under a
	// flood of new flows that was a quarter of the sample path's CPU time,
	// so the daemon reserves what its fast-path maps can hold.
	Reserve int
	// IdleTimeout expires decided flows without packets. Default 10 min.
	IdleTimeout time.Duration
	// PendingTimeout expires undecided flows without packets. Default 30 s.
	PendingTimeout time.Duration
	// Shards is the number of independently locked shards, a power of
	// two. Default 64.
	Shards int
	// OnEvent, when set, receives every event. It runs with the flow's
	// shard locked: it must not call back into the cache.
	OnEvent func(Event)
}

func (c *Config) setDefaults() {
	if c.Capacity == 0 {
		c.Capacity = 1_000_000
	}
	if c.PendingCapacity == 0 {
		c.PendingCapacity = 65536
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 10 * time.Minute
	}
	if c.PendingTimeout == 0 {
		c.PendingTimeout = 30 * time.Second
	}
	if c.Shards == 0 {
		c.Shards = 64
	}
}

// ErrConfig is returned by New for impossible sizes.
var ErrConfig = errors.New("flowcache: invalid configuration")

// EventType names what happened to a flow.
type EventType uint8

// Events.
const (
	EventNone    EventType = iota
	EventDecided           // a verdict was reached (or registered)
	EventRevoked           // a null verdict was withdrawn, or the SPI was reused
	EventExpired           // the flow went idle, or was evicted, and was dropped
)

var eventNames = [...]string{"none", "decided", "revoked", "expired"}

func (t EventType) String() string {
	if int(t) < len(eventNames) {
		return eventNames[t]
	}
	return "invalid"
}

// Event reports a change of a flow. Flow is a copy taken at the event.
type Event struct {
	Type   EventType
	Key    Key
	Flow   Flow
	Time   int64                 // Unix nanoseconds
	Reason heuristics.Withdrawal // for EventRevoked
	// Evicted is set on EventExpired when the flow was dropped for room,
	// not for idleness.
	Evicted bool
}

// Stats counts what the cache holds and did.
type Stats struct {
	Decided, Pending               int
	Decisions, Revocations         uint64
	Expired, Evicted, PendingDrops uint64
}

// Cache is a sharded, bounded flow table. It is safe for concurrent use.
type Cache struct {
	cfg     Config
	engine  *heuristics.Engine
	shards  []shard
	mask    uint32
	decided atomic.Int64 // decided flows in all shards
}

type shard struct {
	mu      sync.Mutex
	decided table
	pending pendingPool
	stats   Stats
}

// New returns a cache that decides flows with engine.
func New(engine *heuristics.Engine, cfg Config) (*Cache, error) {
	cfg.setDefaults()
	if cfg.Shards < 1 || cfg.Shards&(cfg.Shards-1) != 0 || cfg.Capacity < cfg.Shards || cfg.PendingCapacity < cfg.Shards {
		return nil, ErrConfig
	}
	c := &Cache{cfg: cfg, engine: engine, shards: make([]shard, cfg.Shards), mask: uint32(cfg.Shards - 1)}
	// Shards get 1/64 more room than an even share, so that the uneven
	// spread of keys does not evict from a full shard while the cache as a
	// whole has room; the total is bounded by the shared count.
	per, perPending := cfg.Capacity/cfg.Shards, cfg.PendingCapacity/cfg.Shards
	per += per/64 + 1
	reserve := 0
	if cfg.Reserve > 0 {
		reserve = min(cfg.Reserve, cfg.Capacity)/cfg.Shards + 1
		reserve += reserve / 64
	}
	for i := range c.shards {
		s := &c.shards[i]
		s.decided.init(per, reserve)
		s.pending.init(perPending)
	}
	return c, nil
}

// Engine returns the engine the cache decides flows with.
func (c *Cache) Engine() *heuristics.Engine { return c.engine }

func (c *Cache) shard(k *Key) (*shard, uint32) {
	h := k.hash()
	return &c.shards[h&c.mask], h
}

// Result is what Process learned about a packet's flow.
type Result struct {
	Verdict heuristics.Verdict
	// Event is EventDecided or EventRevoked when this packet changed the
	// flow's verdict.
	Event EventType
	// First is when the flow's first packet was seen (Unix nanoseconds),
	// set with EventDecided: the time to a verdict without a lookup.
	First int64
}

// Process accounts packet p (KindESP or KindWESP, length bytes on the wire,
// seen at now in Unix nanoseconds) to its flow and returns the flow's
// verdict. An undecided flow's evidence grows; a decided flow is watched
// for revocation and SPI reuse.
func (c *Cache) Process(p *packet.Packet, length int, now int64) Result {
	k := KeyOf(p)
	s, h := c.shard(&k)
	s.mu.Lock()
	defer s.mu.Unlock()

	if fp := s.decided.get(&k, h); fp != nil {
		fp.account(p, length, now)
		fp.ref()
		w := c.engine.Watch(&fp.Monitor, &fp.Verdict, p, now)
		if w == heuristics.KeepVerdict {
			return Result{Verdict: fp.Verdict}
		}
		// Withdrawn: the flow starts over as undecided, keeping its
		// counters, and this packet is its first evidence.
		pe := c.withdraw(s, k, h, fp, w, now)
		return c.observe(s, pe, h, p, now, EventRevoked)
	}
	pe := s.pending.lookup(k)
	if pe == nil {
		// Most flows decide on their first packet: judge it before
		// taking a pending entry, which costs a map insert and delete
		// and, with the pool full, the eviction of an undecided flow
		// for one that never needed the room.
		var st heuristics.FlowState
		v, final := c.engine.Observe(&st, p)
		var f Flow
		f.account(p, length, now)
		if final {
			c.decide(s, &k, h, &f, v, p, now)
			return Result{Verdict: v, Event: EventDecided, First: f.First}
		}
		pe = s.pending.insert(k, c, s, now)
		pe.state, pe.flow = st, f
		return Result{Verdict: v, Event: EventNone}
	}
	pe.flow.account(p, length, now)
	return c.observe(s, pe, h, p, now, EventNone)
}

// withdraw moves the decided flow fp of k back to the pending pool as
// undecided, keeping its counters, and emits EventRevoked. s is locked.
func (c *Cache) withdraw(s *shard, k Key, h uint32, fp *Flow, w heuristics.Withdrawal, now int64) *pendingEntry {
	f := *fp
	s.decided.remove(&k, h)
	c.decided.Add(-1)
	s.stats.Revocations++
	c.emit(Event{Type: EventRevoked, Key: k, Flow: f, Time: now, Reason: w})
	pe := s.pending.insert(k, c, s, now)
	pe.flow = f
	pe.flow.Verdict = heuristics.Verdict{}
	pe.flow.Monitor = heuristics.Monitor{}
	return pe
}

// Revoke withdraws the verdict of a decided flow for reason w, on evidence
// gathered elsewhere (the inline fast path's per-flow counters): the flow
// starts over as undecided, keeping its counters, and EventRevoked is
// emitted as when Process withdraws. Verdicts of known SAs (SourceKnown) are
// never withdrawn. It reports whether a verdict was withdrawn.
func (c *Cache) Revoke(k Key, w heuristics.Withdrawal, now int64) bool {
	s, h := c.shard(&k)
	s.mu.Lock()
	defer s.mu.Unlock()
	fp := s.decided.get(&k, h)
	if fp == nil || fp.Verdict.Source == heuristics.SourceKnown {
		return false
	}
	c.withdraw(s, k, h, fp, w, now)
	return true
}

func (c *Cache) observe(s *shard, pe *pendingEntry, h uint32, p *packet.Packet, now int64, ev EventType) Result {
	v, final := c.engine.Observe(&pe.state, p)
	if !final {
		return Result{Verdict: v, Event: ev}
	}
	k := pe.key
	flow := pe.flow
	s.pending.remove(pe)
	c.decide(s, &k, h, &flow, v, p, now)
	return Result{Verdict: v, Event: EventDecided, First: flow.First}
}

// decide stores flow k, decided v by packet p, among s's decided flows
// and emits EventDecided.
func (c *Cache) decide(s *shard, k *Key, h uint32, flow *Flow, v heuristics.Verdict, p *packet.Packet, now int64) {
	c.makeRoom(s, now)
	f := s.decided.put(k, h, flow)
	c.decided.Add(1)
	f.Verdict = v
	if v.Class == heuristics.Null {
		c.engine.Remember(&v, p)
	}
	// The monitor starts from the deciding packet's sequence number.
	c.engine.Watch(&f.Monitor, &f.Verdict, p, now)
	s.stats.Decisions++
	c.emit(Event{Type: EventDecided, Key: *k, Flow: *f, Time: now})
}

// makeRoom makes room for one more decided flow in s, evicting the lowest
// ranked of a few of its flows (table.victim: one-packet flows before
// flows seen again, then the least recently seen) when the shard is full
// or the cache holds Capacity flows. (A cache at capacity whose shard s is empty takes
// the flow anyway: the total stays below Capacity + Shards.)
func (c *Cache) makeRoom(s *shard, now int64) {
	if !s.decided.full() && c.decided.Load() < int64(c.cfg.Capacity) {
		return
	}
	if s.decided.len() == 0 {
		return
	}
	i := s.decided.victim(now)
	e := s.decided.entries[i]
	s.decided.removeEntry(i)
	c.decided.Add(-1)
	s.stats.Evicted++
	c.emit(Event{Type: EventExpired, Key: e.key, Flow: e.flow, Time: now, Evicted: true})
}

func (c *Cache) emit(e Event) {
	if c.cfg.OnEvent != nil {
		c.cfg.OnEvent(e)
	}
}

// Register records a flow's real algorithm, known from whoever negotiated
// the SA (the IKE stack, or configuration): the engine's heuristics are
// skipped for it and its verdict has SourceKnown. For a null SA, icvLen and
// ivLen are its ICV and IV lengths.
func (c *Cache) Register(k Key, null bool, icvLen, ivLen uint8, now int64) {
	v := heuristics.Verdict{Class: heuristics.Encrypted, Source: heuristics.SourceKnown, Evidence: heuristics.EvKnown}
	if null {
		v.Class, v.ICVLen, v.IVLen = heuristics.Null, icvLen, ivLen
	}
	s, h := c.shard(&k)
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.decided.get(&k, h)
	if f == nil {
		var nf Flow
		if pe := s.pending.lookup(k); pe != nil {
			nf = pe.flow
			s.pending.remove(pe)
		}
		c.makeRoom(s, now)
		f = s.decided.put(&k, h, &nf)
		c.decided.Add(1)
	}
	f.Verdict = v
	f.Monitor = heuristics.Monitor{}
	if f.Packets == 0 {
		// Registered before any packet: idle from now, not from 1970.
		f.First, f.Last = now, now
	}
	s.stats.Decisions++
	c.emit(Event{Type: EventDecided, Key: k, Flow: *f, Time: now})
}

// Lookup returns the flow of k, decided or not.
func (c *Cache) Lookup(k Key) (Flow, bool) {
	s, h := c.shard(&k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if f := s.decided.get(&k, h); f != nil {
		return *f, true
	}
	if pe := s.pending.lookup(k); pe != nil {
		return pe.flow, true
	}
	return Flow{}, false
}

// Sweep expires flows idle at now and reports how many it dropped. The
// inline daemon calls it from a timer; replay calls it as capture time
// advances.
func (c *Cache) Sweep(now int64) int {
	n := 0
	idle, pendingIdle := int64(c.cfg.IdleTimeout), int64(c.cfg.PendingTimeout)
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		// Backwards, as removal moves the last entry into the hole.
		for i := s.decided.len() - 1; i >= 0; i-- {
			if e := s.decided.entries[i]; now-e.flow.Last > idle {
				s.decided.removeEntry(i)
				c.decided.Add(-1)
				s.stats.Expired++
				c.emit(Event{Type: EventExpired, Key: e.key, Flow: e.flow, Time: now})
				n++
			}
		}
		n += s.pending.expire(c, s, now, pendingIdle)
		s.mu.Unlock()
	}
	return n
}

// Range calls fn for every flow, decided or pending, until fn returns false.
// Shards are locked one at a time, so fn sees a consistent shard, not a
// consistent cache; it must not call back into the cache.
func (c *Cache) Range(fn func(Key, *Flow) bool) {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		for i := range s.decided.entries {
			e := s.decided.entries[i]
			if !fn(e.key, &e.flow) {
				s.mu.Unlock()
				return
			}
		}
		if !s.pending.each(fn) {
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
	}
}

// Stats returns the cache's counters summed over shards.
func (c *Cache) Stats() Stats {
	var t Stats
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		t.Decided += s.decided.len()
		t.Pending += s.pending.len()
		t.Decisions += s.stats.Decisions
		t.Revocations += s.stats.Revocations
		t.Expired += s.stats.Expired
		t.Evicted += s.stats.Evicted
		t.PendingDrops += s.stats.PendingDrops
		s.mu.Unlock()
	}
	return t
}

// Remove deletes the flow of k, decided or pending, and returns it. No
// event is emitted: the caller reports the end of a flow it removes.
func (c *Cache) Remove(k Key) (Flow, bool) {
	s, h := c.shard(&k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if f := s.decided.get(&k, h); f != nil {
		out := *f
		s.decided.remove(&k, h)
		c.decided.Add(-1)
		return out, true
	}
	if pe := s.pending.lookup(k); pe != nil {
		out := pe.flow
		s.pending.remove(pe)
		return out, true
	}
	return Flow{}, false
}

// SetCounters replaces a decided flow's counters with totals counted
// elsewhere (the fast path's per-flow counters) and marks it seen at now if
// they moved, so that flows the fast path handles alone do not expire.
func (c *Cache) SetCounters(k Key, packets, bytes uint64, now int64) bool {
	s, h := c.shard(&k)
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.decided.get(&k, h)
	if f == nil {
		return false
	}
	if packets != f.Packets {
		f.Last = now
		f.ref()
	}
	f.Packets, f.Bytes = packets, bytes
	return true
}

// Touch records that the fast path counted packets of the decided flow of
// k since its last look: the flow is marked seen at now (if that is later
// than its last packet) and counts as seen again for eviction, as a packet
// through Process would. It reports whether k is decided. The inline daemon
// calls it for the flows the fast path handled, which the cache never sees:
// without it such a flow looks like a one-packet flow, idle since its
// decision, and a flood of new decided flows evicts it (docs/inline-perf.md).
func (c *Cache) Touch(k Key, now int64) bool {
	s, h := c.shard(&k)
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.decided.get(&k, h)
	if f == nil {
		return false
	}
	f.Last = max(f.Last, now)
	f.ref()
	return true
}
