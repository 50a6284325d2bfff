package ike

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/espy-dpi/espy/ike/message"
)

// TestRekeyChildSelectors rekeys a Child SA with narrowed selectors: both
// ends carry only the narrowed SA afterwards, and its own rekey keeps
// them. The responder's NarrowTS defers to its configured selectors with
// ErrDefaultNarrowing; selectors outside them are refused and the old SA
// stays.
func TestRekeyChildSelectors(t *testing.T) {
	rp := newRekeyPair(t, "null-sha256", "null-sha256")
	rp.iniCfg.LocalTS, rp.iniCfg.RemoteTS = prefixTS("198.51.100.0/24"), prefixTS("203.0.113.0/24")
	rp.respCfg.LocalTS, rp.respCfg.RemoteTS = prefixTS("203.0.113.0/24"), prefixTS("198.51.100.0/24")
	var asked atomic.Int32
	rp.respCfg.NarrowTS = func(tsi, tsr []message.Selector) ([]message.Selector, []message.Selector, error) {
		asked.Add(1)
		return nil, nil, ErrDefaultNarrowing
	}
	if err := rp.resp.Respond(rp.respCfg); err != nil {
		t.Fatal(err)
	}
	isa, rsa, ic, rc := rp.establish(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	local, remote := prefixTS("198.51.100.0/24"), prefixTS("203.0.113.0/25")
	n, err := isa.RekeyChildSelectors(ctx, ic, local, remote)
	if err != nil {
		t.Fatal(err)
	}
	ni, nr := waitChildren(t, isa, rsa, ic, rc)
	if ni != n || !equalTS(ni.LocalTS, local) || !equalTS(ni.RemoteTS, remote) ||
		!equalTS(nr.LocalTS, remote) || !equalTS(nr.RemoteTS, local) {
		t.Fatalf("narrowed: initiator %v === %v, responder %v === %v", ni.LocalTS, ni.RemoteTS, nr.LocalTS, nr.RemoteTS)
	}
	childPairOf(t, rsa, ni)

	// A plain rekey of the narrowed SA keeps its selectors.
	n2, err := isa.RekeyChild(ctx, ni)
	if err != nil {
		t.Fatal(err)
	}
	if !equalTS(n2.LocalTS, local) || !equalTS(n2.RemoteTS, remote) {
		t.Errorf("rekey of the narrowed SA: %v === %v", n2.LocalTS, n2.RemoteTS)
	}
	waitChildren(t, isa, rsa, ni, nr)

	// Outside the responder's selectors: TS_UNACCEPTABLE, the SA stays.
	_, err = isa.RekeyChildSelectors(ctx, n2, local, prefixTS("192.0.2.0/24"))
	var ne *NotifyError
	if !errors.As(err, &ne) || ne.Type != message.TS_UNACCEPTABLE {
		t.Errorf("rekey outside the responder's selectors: %v", err)
	}
	if cs := isa.Children(); len(cs) != 1 || cs[0] != n2 {
		t.Errorf("after the refused rekey: %v", cs)
	}
	if n := asked.Load(); n != 4 {
		t.Errorf("responder's NarrowTS asked %d times, want 4 (IKE_AUTH and three rekeys)", n)
	}
	if _, err := isa.RekeyChildSelectors(ctx, n2, nil, remote); !errors.Is(err, ErrConfig) {
		t.Errorf("no local selectors: %v", err)
	}
}

func equalTS(a, b []message.Selector) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].Contains(&b[i]) || !b[i].Contains(&a[i]) {
			return false
		}
	}
	return true
}
