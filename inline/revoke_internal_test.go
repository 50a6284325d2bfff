package inline

import (
	"net/netip"
	"testing"

	"github.com/espy-dpi/espy/flowcache"
	"github.com/espy-dpi/espy/heuristics"
)

// TestRevokerRule checks the revoker's windows with the engine's default
// Revocation settings (1 s and 50%, 10 s and 95%, MinBad 16) on hand-made
// counter moves, one look per second.
func TestRevokerRule(t *testing.T) {
	cfg := heuristics.New(heuristics.Config{}).Config().Revocation
	fk := flowcache.NewKey(netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.1"), 0x1234)
	// run feeds one look per move and returns the look (1-based) that
	// withdrew the verdict, or 0.
	run := func(moves ...revCount) int {
		rv := newRevoker(cfg)
		for i, m := range moves {
			rv.tick++
			g, _, _ := rv.judge(fk, m)
			rv.forget()
			if g {
				return i + 1
			}
		}
		return 0
	}
	rep := func(n int, m revCount) []revCount {
		out := make([]revCount, n)
		for i := range out {
			out[i] = m
		}
		return out
	}
	for _, c := range []struct {
		name  string
		moves []revCount
		want  int
	}{
		{"fast: 16 of 32", []revCount{{100, 0}, {32, 16}}, 2},
		{"fast: 15 of 15, under MinBad", []revCount{{15, 15}}, 0},
		{"fast: 16 of 33, under half", []revCount{{33, 16}}, 0},
		{"slow: 2 of 2 a second reaches MinBad at the 8th", rep(12, revCount{2, 2}), 8},
		{"slow: 2 of 3 a second, not over 95%", rep(12, revCount{3, 2}), 0},
		{"slow: 15 then 1 nine seconds later", append(append([]revCount{{15, 15}}, rep(8, revCount{})...), revCount{1, 1}), 10},
		{"slow: 15 then 1 ten seconds later, out of the window", append(append([]revCount{{15, 15}}, rep(9, revCount{})...), revCount{1, 1}), 0},
		{"slow: good packets in the window dilute", append([]revCount{{400, 0}}, rep(9, revCount{3, 3})...), 0},
	} {
		if got := run(c.moves...); got != c.want {
			t.Errorf("%s: withdrawn at look %d, want %d (0: never)", c.name, got, c.want)
		}
	}

	// A flow not judged at a look is forgotten: its window starts over.
	rv := newRevoker(cfg)
	rv.tick++
	rv.judge(fk, revCount{15, 15})
	rv.tick++
	rv.forget()
	if len(rv.flows) != 0 {
		t.Fatalf("window kept for a flow not seen: %v", rv.flows)
	}
	if g, _, slow := rv.judge(fk, revCount{1, 1}); g || slow != (revCount{1, 1}) {
		t.Errorf("after forget: garbage %v, slow window %+v", g, slow)
	}
}
