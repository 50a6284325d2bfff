package ike

import (
	"errors"
	"net/netip"
	"sync/atomic"
	"testing"

	"github.com/espy-dpi/espy/ike/message"
)

// TestNarrowTSHook: the responder's Config.NarrowTS decides the Child SA's
// selectors in IKE_AUTH and in a Child SA rekey, and its error is
// TS_UNACCEPTABLE.
func TestNarrowTSHook(t *testing.T) {
	p := newPair(t, "aes128gcm16-prfsha256-x25519", "null-sha256", ListenConfig{})
	narrowI := PrefixSelector(netip.MustParsePrefix("198.51.100.0/25"))
	narrowR := PrefixSelector(netip.MustParsePrefix("203.0.113.64/26"))
	var calls atomic.Int32 // the hook runs in the responder's read loop
	p.respCfg.NarrowTS = func(tsi, tsr []message.Selector) ([]message.Selector, []message.Selector, error) {
		n := calls.Add(1)
		// IKE_AUTH proposes the initiator's configuration; the rekey the
		// old SA's narrowed selectors.
		want := PrefixSelector(netip.MustParsePrefix("198.51.100.0/24"))
		if n > 1 {
			want = narrowI
		}
		if len(tsi) != 1 || !sameSel(tsi[0], want) {
			t.Errorf("hook got TSi %v", tsi)
		}
		return []message.Selector{narrowI}, []message.Selector{narrowR}, nil
	}
	if err := p.resp.Respond(p.respCfg); err != nil {
		t.Fatal(err)
	}
	sa, err := p.initiate(t)
	if err != nil {
		t.Fatal(err)
	}
	c := sa.Children()[0]
	if len(c.LocalTS) != 1 || !sameSel(c.LocalTS[0], narrowI) || len(c.RemoteTS) != 1 || !sameSel(c.RemoteTS[0], narrowR) {
		t.Fatalf("initiator's Child SA selectors %v / %v, want the hook's", c.LocalTS, c.RemoteTS)
	}
	if _, err := sa.RekeyChild(t.Context(), c); err != nil {
		t.Fatalf("rekey: %v", err)
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("hook called %d times, want 2 (IKE_AUTH and the rekey)", n)
	}

	p.respCfg.NarrowTS = func(tsi, tsr []message.Selector) ([]message.Selector, []message.Selector, error) {
		return nil, nil, errors.New("not in the SPD")
	}
	if err := p.resp.Respond(p.respCfg); err != nil {
		t.Fatal(err)
	}
	_, err = p.initiate(t)
	var ne *NotifyError
	if !errors.As(err, &ne) || ne.Type != message.TS_UNACCEPTABLE {
		t.Fatalf("refused by the hook: %v, want TS_UNACCEPTABLE", err)
	}
}

func sameSel(a, b message.Selector) bool {
	return a.TSType == b.TSType && a.IPProto == b.IPProto && a.StartPort == b.StartPort && a.EndPort == b.EndPort &&
		a.StartAddr == b.StartAddr && a.EndAddr == b.EndAddr
}
