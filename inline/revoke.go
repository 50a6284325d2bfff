package inline

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/espy-dpi/espy/ebpf"
	"github.com/espy-dpi/espy/flowcache"
	"github.com/espy-dpi/espy/heuristics"
)

// Inline revocation. Once a flow is decided null the XDP program handles it
// alone, so the flow cache never sees its packets and Engine.Watch cannot
// withdraw the verdict. The fast path instead counts, per flow, the packets
// that fail the null parse (ebpf.FlowStats.Unparsed); the revoker reads the
// counters every FastWindow and applies RFC 5879 section 4.3's rule with the
// engine's Revocation settings to the deltas: a null verdict is withdrawn
// when at least MinBad packets failed and they are at least FastRate of the
// flow's packets in the last FastWindow, or more than SlowRate of them over
// the last SlowWindow (a sliding window of FastWindow buckets). Withdrawing
// moves the flow cache entry back to undecided (EventRevoked, reason
// garbage: onEvent writes the record and counts the metric) and deletes the
// flow's BPF verdicts, so that the fast path samples it again.
//
// Unlike Engine.Watch it has no sequence numbers: replayed junk counts too.

// revCount is one bucket of a flow's window: its packets and the bad ones.
type revCount struct{ total, bad uint64 }

// revWindow is a null flow's recent buckets, a ring indexed by tick, and
// the fast-path keys it had packets under while it had a window.
type revWindow struct {
	seen    uint64 // tick of the latest bucket
	buckets []revCount
	keys    []ebpf.FlowKey
}

// slotCount is a counter slot at the last look that read it.
type slotCount struct {
	gen               uint32
	ok                bool
	packets, unparsed uint64
}

// revCarrier is what one look read of a flow: its keys and their moves.
type revCarrier struct {
	fk    flowcache.Key
	keys  []ebpf.FlowKey
	delta revCount
}

// revoker is the state of the revocation ticker. It is used by one
// goroutine only.
type revoker struct {
	cfg     heuristics.Revocation
	tick    uint64
	started bool        // prev holds a first look
	prev    []slotCount // counters at the last look, by slot
	flows   map[flowcache.Key]*revWindow
	nb      int // buckets in the slow window
	failed  int // consecutive looks that could not read the counters

	// Buffers reused from look to look.
	act      []ebpf.FlowActivity
	byFlow   map[flowcache.Key]int // index in carriers
	carriers []revCarrier
}

func newRevoker(cfg heuristics.Revocation) *revoker {
	nb := 1
	if cfg.FastWindow > 0 {
		nb = max(1, int((cfg.SlowWindow+cfg.FastWindow-1)/cfg.FastWindow))
	}
	return &revoker{cfg: cfg, flows: make(map[flowcache.Key]*revWindow), nb: nb, byFlow: make(map[flowcache.Key]int)}
}

// revokeLoop looks at the null flows' counters at start and every FastWindow
// until ctx is done.
func (d *Daemon) revokeLoop(ctx context.Context) {
	rv := newRevoker(d.cache.Engine().Config().Revocation)
	tick := time.NewTicker(max(rv.cfg.FastWindow, 10*time.Millisecond))
	defer tick.Stop()
	// The first look only records (after a restart with pinned maps the
	// counters hold the flows' whole lives): take it now, so that what
	// flows do from the start on counts.
	d.revokeTick(rv, time.Now())
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		d.revokeTick(rv, time.Now())
	}
}

// revokeTick reads the counters of the null flows that had packets in the
// fast path since the last look (ebpf.ActiveFlows; the first look reads
// every slot), adds their moves to their windows, moves the windows of the
// flows without packets on by an empty bucket, and withdraws the verdicts
// whose windows hold too much garbage. A flow without packets has nothing
// to add, so the look costs in proportion to the flows with traffic, not
// to the null flows: with 100,000 of them, reading them all each second
// was 43% of the daemon's CPU. It returns the flows withdrawn.
func (d *Daemon) revokeTick(rv *revoker, now time.Time) []flowcache.Key {
	act, err := d.prog.ActiveFlows(rv.act[:0], !rv.started)
	if err != nil {
		// The next look's moves then span two periods; a warning a
		// second would drown the log.
		rv.failed++
		if rv.failed%10 == 1 {
			d.log.Warn().Err(err).Int("consecutive", rv.failed).Msg("read flow counters for revocation")
		}
		return nil
	}
	rv.act = act
	rv.failed = 0
	first := !rv.started
	rv.started = true
	rv.tick++
	clear(rv.byFlow)
	rv.carriers = rv.carriers[:0]
	for i := range act {
		a := &act[i]
		if int(a.Slot) >= len(rv.prev) {
			rv.prev = append(rv.prev, make([]slotCount, int(a.Slot)+1-len(rv.prev)+len(rv.prev)/2)...)
		}
		p := &rv.prev[a.Slot]
		var delta revCount
		switch {
		case first:
			// The first look only records.
		case p.ok && p.gen == a.Gen && a.Packets >= p.packets && a.Unparsed >= p.unparsed:
			delta = revCount{a.Packets - p.packets, a.Unparsed - p.unparsed}
		default:
			// A verdict written since the slot's last look: its
			// counters started from zero.
			delta = revCount{a.Packets, a.Unparsed}
		}
		*p = slotCount{gen: a.Gen, ok: true, packets: a.Packets, unparsed: a.Unparsed}
		if first || a.Kind != ebpf.VerdictNull {
			continue
		}
		fk := flowcache.NewKey(a.Key.SrcAddr(), a.Key.DstAddr(), a.Key.Spi)
		j, ok := rv.byFlow[fk]
		if !ok {
			j = len(rv.carriers)
			rv.byFlow[fk] = j
			if j < cap(rv.carriers) {
				rv.carriers = rv.carriers[:j+1]
				c := &rv.carriers[j]
				c.fk, c.keys, c.delta = fk, c.keys[:0], revCount{}
			} else {
				rv.carriers = append(rv.carriers, revCarrier{fk: fk})
			}
		}
		c := &rv.carriers[j]
		c.keys = append(c.keys, a.Key)
		c.delta.total += delta.total
		c.delta.bad += delta.bad
	}

	var revoked []flowcache.Key
	for i := range rv.carriers {
		c := &rv.carriers[i]
		if d.revokeFlow(rv, c.fk, c.keys, c.delta, now) {
			revoked = append(revoked, c.fk)
		}
	}
	// The flows with a window but no packets this look: their windows
	// move on, which can tip the slow rate when good packets leave it.
	for fk, w := range rv.flows {
		if w.seen != rv.tick && d.revokeFlow(rv, fk, nil, revCount{}, now) {
			revoked = append(revoked, fk)
		}
	}
	rv.forget()
	return revoked
}

// revokeFlow judges null flow fk on its moves since the last look, under
// keys, and withdraws its verdict if it is garbage, reporting whether it
// did. A window left empty is dropped: it holds nothing an empty one
// would not.
func (d *Daemon) revokeFlow(rv *revoker, fk flowcache.Key, keys []ebpf.FlowKey, delta revCount, now time.Time) bool {
	f, ok := d.cache.Lookup(fk)
	if ok && f.Verdict.Class == heuristics.Unknown && len(keys) > 0 {
		// Withdrawn while this key had no packets, so it kept its null
		// verdict: delete it, so the fast path samples it again.
		d.deleteVerdicts(keys)
		return false
	}
	if !ok || f.Verdict.Class != heuristics.Null || f.Verdict.Source == heuristics.SourceKnown {
		return false // not judged: forget drops its window
	}
	garbage, fast, slow := rv.judge(fk, delta)
	w := rv.flows[fk]
	for _, k := range keys {
		if !slices.Contains(w.keys, k) {
			w.keys = append(w.keys, k)
		}
	}
	if !garbage {
		if slow == (revCount{}) {
			delete(rv.flows, fk)
		}
		return false
	}
	// The flow cache first: a sample that arrives once the BPF verdict
	// is gone then finds the flow undecided, not a null verdict to write
	// back.
	if !d.cache.Revoke(fk, heuristics.Garbage, now.UnixNano()) {
		return false
	}
	d.deleteVerdicts(w.keys)
	delete(rv.flows, fk)
	var first ebpf.FlowKey
	if len(w.keys) > 0 {
		first = w.keys[0]
	}
	d.log.Info().Stringer("flow", first).Uint64("bad", fast.bad).Uint64("packets", fast.total).
		Uint64("bad_slow", slow.bad).Uint64("packets_slow", slow.total).Msg("null verdict revoked: garbage")
	return true
}

// deleteVerdicts deletes the fast-path verdicts of keys.
func (d *Daemon) deleteVerdicts(keys []ebpf.FlowKey) {
	for _, k := range keys {
		if err := d.prog.DeleteVerdict(k); err != nil && !errors.Is(err, ebpf.ErrNotFound) {
			d.log.Warn().Err(err).Stringer("flow", k).Msg("delete revoked verdict")
		}
	}
}

// judge adds delta, the moves of null flow fk since the last look, to its
// window and reports whether the flow's verdict is to be withdrawn, with
// the sums of the fast and the slow window.
func (rv *revoker) judge(fk flowcache.Key, delta revCount) (garbage bool, fast, slow revCount) {
	w := rv.flows[fk]
	if w == nil {
		w = &revWindow{buckets: make([]revCount, rv.nb)}
		rv.flows[fk] = w
	}
	w.seen = rv.tick
	w.buckets[rv.tick%uint64(rv.nb)] = delta
	for _, b := range w.buckets {
		slow.total += b.total
		slow.bad += b.bad
	}
	fast = delta
	minBad := uint64(max(rv.cfg.MinBad, 1))
	garbage = (fast.bad >= minBad && float64(fast.bad) >= rv.cfg.FastRate*float64(fast.total)) ||
		(slow.bad >= minBad && float64(slow.bad) > rv.cfg.SlowRate*float64(slow.total))
	return garbage, fast, slow
}

// forget drops the windows of flows not judged at this look: they left the
// fast path, or are no longer null. A flow judged at every look has no
// stale buckets.
func (rv *revoker) forget() {
	for fk, w := range rv.flows {
		if w.seen != rv.tick {
			delete(rv.flows, fk)
		}
	}
}
