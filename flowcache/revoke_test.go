package flowcache_test

import (
	"testing"

	"github.com/espy-dpi/espy/flowcache"
	"github.com/espy-dpi/espy/heuristics"
)

// TestRevoke checks the withdrawal on outside evidence (inline's fast-path
// counters): a decided flow goes back to undecided with EventRevoked, a known
// SA and an unknown flow are left alone.
func TestRevoke(t *testing.T) {
	esp := synthESP(t, 1, nullFlow)
	rec := &recorder{}
	c := newCache(t, small, rec)
	fs := flowSpec{src: peerA, dst: peerB, spi: 0x7101}
	decide(t, c, fs, esp, 1, t0, heuristics.Null)
	key := flowcache.NewKey(fs.src, fs.dst, fs.spi)
	before, _ := c.Lookup(key)
	if !c.Revoke(key, heuristics.Garbage, t0+1) {
		t.Fatal("decided flow not revoked")
	}
	if n := rec.count(flowcache.EventRevoked, func(e flowcache.Event) bool {
		return e.Key == key && e.Reason == heuristics.Garbage && e.Flow.Verdict.Class == heuristics.Null && e.Time == t0+1
	}); n != 1 {
		t.Errorf("%d revocation events: %+v", n, rec.events)
	}
	f, ok := c.Lookup(key)
	if !ok || f.Verdict.Class != heuristics.Unknown || f.Packets != before.Packets {
		t.Errorf("flow after revocation: %+v %v", f, ok)
	}
	if st := c.Stats(); st.Revocations != 1 || st.Decided != 0 || st.Pending != 1 {
		t.Errorf("stats %+v", st)
	}
	if c.Revoke(key, heuristics.Garbage, t0+2) {
		t.Error("undecided flow revoked again")
	}
	known := flowcache.NewKey(fs.src, fs.dst, 0x7102)
	c.Register(known, true, 12, 0, t0)
	if c.Revoke(known, heuristics.Garbage, t0+3) {
		t.Error("known SA revoked")
	}
	if f, _ := c.Lookup(known); f.Verdict.Source != heuristics.SourceKnown {
		t.Errorf("known SA after Revoke: %+v", f)
	}
	if n := rec.count(flowcache.EventRevoked, nil); n != 1 {
		t.Errorf("%d revocation events in all", n)
	}
}
