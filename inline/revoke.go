package inline

import (
	"context"
	"errors"
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

// revWindow is a null flow's recent buckets, a ring indexed by tick.
type revWindow struct {
	seen    uint64 // tick of the latest bucket
	buckets []revCount
}

// revoker is the state of the revocation ticker. It is used by one
// goroutine only.
type revoker struct {
	cfg     heuristics.Revocation
	tick    uint64
	started bool          // prev holds a first look
	prev    ebpf.Snapshot // counters at the last look, by fast-path key
	flows   map[flowcache.Key]*revWindow
	nb      int // buckets in the slow window
	failed  int // consecutive looks that could not read the counters
}

func newRevoker(cfg heuristics.Revocation) *revoker {
	nb := 1
	if cfg.FastWindow > 0 {
		nb = max(1, int((cfg.SlowWindow+cfg.FastWindow-1)/cfg.FastWindow))
	}
	return &revoker{cfg: cfg, flows: make(map[flowcache.Key]*revWindow), nb: nb}
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

// revokeTick reads the counters of the flows null in the fast path, adds
// their moves since the last look to their windows and withdraws the
// verdicts whose windows hold too much garbage. It returns the flows
// withdrawn.
func (d *Daemon) revokeTick(rv *revoker, now time.Time) []flowcache.Key {
	snap, err := d.prog.NullFlows()
	if err != nil {
		// The next look's moves then span two periods; a warning a
		// second would drown the log.
		rv.failed++
		if rv.failed%10 == 1 {
			d.log.Warn().Err(err).Int("consecutive", rv.failed).Msg("read flow counters for revocation")
		}
		return nil
	}
	rv.failed = 0
	first := !rv.started
	rv.started = true
	rv.tick++
	type carrier struct {
		keys  []ebpf.FlowKey
		delta revCount
	}
	byFlow := make(map[flowcache.Key]*carrier)
	for k, st := range snap {
		fk := flowcache.NewKey(k.SrcAddr(), k.DstAddr(), k.Spi)
		c := byFlow[fk]
		if c == nil {
			c = &carrier{}
			byFlow[fk] = c
		}
		c.keys = append(c.keys, k)
		old, ok := rv.prev[k]
		switch {
		case first:
			// The first look only records.
		case ok && st.Packets >= old.Packets && st.Unparsed >= old.Unparsed:
			c.delta.total += st.Packets - old.Packets
			c.delta.bad += st.Unparsed - old.Unparsed
		default:
			// A verdict written since the last look: its slot's
			// counters started from zero.
			c.delta.total += st.Packets
			c.delta.bad += st.Unparsed
		}
	}
	rv.prev = snap

	var revoked []flowcache.Key
	for fk, c := range byFlow {
		f, ok := d.cache.Lookup(fk)
		if !ok || f.Verdict.Class != heuristics.Null || f.Verdict.Source == heuristics.SourceKnown {
			continue
		}
		garbage, fast, slow := rv.judge(fk, c.delta)
		if !garbage {
			continue
		}
		// The flow cache first: a sample that arrives once the BPF
		// verdict is gone then finds the flow undecided, not a null
		// verdict to write back.
		if !d.cache.Revoke(fk, heuristics.Garbage, now.UnixNano()) {
			continue
		}
		for _, k := range c.keys {
			if err := d.prog.DeleteVerdict(k); err != nil && !errors.Is(err, ebpf.ErrNotFound) {
				d.log.Warn().Err(err).Stringer("flow", k).Msg("delete revoked verdict")
			}
			delete(rv.prev, k)
		}
		delete(rv.flows, fk)
		revoked = append(revoked, fk)
		d.log.Info().Stringer("flow", c.keys[0]).Uint64("bad", fast.bad).Uint64("packets", fast.total).
			Uint64("bad_slow", slow.bad).Uint64("packets_slow", slow.total).Msg("null verdict revoked: garbage")
	}
	rv.forget()
	return revoked
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
