package flowcache

import "github.com/espy-dpi/espy/heuristics"

// pendingEntry is an undecided flow: its evidence and counters.
type pendingEntry struct {
	key   Key
	state heuristics.FlowState
	flow  Flow
	pos   int32 // position in the pool's array
	used  bool
}

// pendingPool is a preallocated array of undecided flows. Free entries are
// reused first; inserting into a full pool evicts entries in first-in
// first-out order (a clock hand over the array). Flows decide in a few
// packets, so the oldest entry is the one least likely ever to decide, and
// a flood of one-packet SPIs only churns this pool.
type pendingPool struct {
	entries []pendingEntry
	index   map[Key]int32
	free    []int32 // entries not in use
	next    int     // the clock hand: the next entry to evict when full
}

func (p *pendingPool) init(n int) {
	p.entries = make([]pendingEntry, n)
	p.index = make(map[Key]int32, n)
	p.free = make([]int32, n)
	for i := range p.free {
		p.free[i] = int32(n - 1 - i)
	}
}

func (p *pendingPool) len() int { return len(p.index) }

func (p *pendingPool) lookup(k Key) *pendingEntry {
	i, ok := p.index[k]
	if !ok {
		return nil
	}
	return &p.entries[i]
}

func (p *pendingPool) insert(k Key, c *Cache, s *shard, now int64) *pendingEntry {
	var i int
	if n := len(p.free); n > 0 {
		i = int(p.free[n-1])
		p.free = p.free[:n-1]
	} else {
		i = p.next
		if p.next++; p.next == len(p.entries) {
			p.next = 0
		}
		e := &p.entries[i]
		delete(p.index, e.key)
		s.stats.PendingDrops++
		c.emit(Event{Type: EventExpired, Key: e.key, Flow: e.flow, Time: now, Evicted: true})
	}
	e := &p.entries[i]
	*e = pendingEntry{key: k, used: true, pos: int32(i)}
	p.index[k] = int32(i)
	return e
}

func (p *pendingPool) remove(e *pendingEntry) {
	delete(p.index, e.key)
	e.used = false
	p.free = append(p.free, e.pos)
}

func (p *pendingPool) expire(c *Cache, s *shard, now, idle int64) int {
	n := 0
	for _, i := range p.index {
		e := &p.entries[i]
		if now-e.flow.Last > idle {
			s.stats.Expired++
			c.emit(Event{Type: EventExpired, Key: e.key, Flow: e.flow, Time: now})
			p.remove(e)
			n++
		}
	}
	return n
}

func (p *pendingPool) each(fn func(Key, *Flow) bool) bool {
	for _, i := range p.index {
		e := &p.entries[i]
		f := e.flow
		f.Verdict.Class = heuristics.Unknown
		f.Verdict.Packets = uint8(min(e.state.Packets(), 255))
		if !fn(e.key, &f) {
			return false
		}
	}
	return true
}
