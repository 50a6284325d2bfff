package ike

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/espy-dpi/espy/ike/message"
	"github.com/espy-dpi/espy/internal/charonlab"
)

// TestInteropRekeyNarrowed has espy narrow a Child SA it initiated to
// charon 5.9.8, 198.51.100.0/24 === 203.0.113.0/24, to 203.0.113.0/25
// with RekeyChildSelectors (what espy run does after an SPD change):
// charon accepts the narrowed rekey and lists only the new SA, with the
// /25. Then charon rekeys it itself (swanctl --rekey): it proposes the
// narrowed selectors again, and espy's NarrowTS sees them.
func TestInteropRekeyNarrowed(t *testing.T) {
	l := newLab(t)
	l.startConf(t, charonlab.SwanctlConf([]string{"a.lab.example", "b.lab.example"},
		charonlab.Conn{Name: "fromespy", Proposals: "aes128gcm16-prfsha256-x25519", Children: []charonlab.Child{{
			Name: "net", ESP: "null-sha256", LocalTS: "203.0.113.0/24", RemoteTS: "198.51.100.0/24"}}}.String()))
	e := l.listenIn(t)
	reg := &eventRecorder{}
	cfg := interopConfig("aes128gcm16-prfsha256-x25519", "null-sha256", reg)
	cfg.LocalTS, cfg.RemoteTS = prefixTS("198.51.100.0/24"), prefixTS("203.0.113.0/24")
	// The responder's view after the SPD change: only the lower half of
	// charon's side (TSi when charon initiates).
	var mu sync.Mutex
	var proposed []string
	cfg.NarrowTS = func(tsi, tsr []message.Selector) ([]message.Selector, []message.Selector, error) {
		mu.Lock()
		proposed = append(proposed, fmt.Sprint(tsi))
		mu.Unlock()
		return narrow(tsi, prefixTS("203.0.113.0/25")), narrow(tsr, prefixTS("198.51.100.0/24")), nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sa, err := e.Initiate(ctx, cfg, netip.AddrPortFrom(charonAddr, DefaultPort))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		sa.Delete(ctx)
		waitFor(t, func() bool { return reg.len() == 0 })
	}()
	old := sa.Children()[0]
	l.AwaitSAs(t, "the /24 Child SA", 10*time.Second, func(out string) bool {
		a, b := spisListed(out, old)
		return a && b && strings.Contains(out, "203.0.113.0/24")
	})

	n, err := sa.RekeyChildSelectors(ctx, old, prefixTS("198.51.100.0/24"), prefixTS("203.0.113.0/25"))
	if err != nil {
		t.Fatalf("charon refused the narrowed rekey: %v\n%s", err, l.Log())
	}
	if !equalTS(n.RemoteTS, prefixTS("203.0.113.0/25")) || !equalTS(n.LocalTS, prefixTS("198.51.100.0/24")) {
		t.Fatalf("narrowed SA: %v === %v", n.LocalTS, n.RemoteTS)
	}
	out := l.AwaitSAs(t, "only the narrowed Child SA", 10*time.Second, func(out string) bool {
		a, b := spisListed(out, n)
		oa, ob := spisListed(out, old)
		return a && b && !oa && !ob
	})
	if !strings.Contains(out, "203.0.113.0/25") || strings.Contains(out, "203.0.113.0/24") {
		t.Errorf("charon's selectors after the narrowed rekey:\n%s", out)
	}

	// charon rekeys the narrowed SA. It proposes its configured /24 again,
	// not the SA's /25; espy's narrowing keeps the /25, and charon takes
	// the narrowed answer.
	l.Swanctl(t, "--rekey", "--child", "net")
	waitFor(t, func() bool { cs := sa.Children(); return len(cs) == 1 && cs[0] != n })
	c := sa.Children()[0]
	mu.Lock()
	got := proposed
	mu.Unlock()
	if len(got) != 1 || got[0] != fmt.Sprint(prefixTS("203.0.113.0/24")) || !equalTS(c.RemoteTS, prefixTS("203.0.113.0/25")) {
		t.Errorf("charon's rekey proposed TSi %v; espy holds %v === %v", got, c.LocalTS, c.RemoteTS)
	}
	out = l.AwaitSAs(t, "charon's rekey of the narrowed Child SA", 10*time.Second, func(out string) bool {
		a, b := spisListed(out, c)
		na, nb := spisListed(out, n)
		return a && b && !na && !nb
	})
	if !strings.Contains(out, "203.0.113.0/25") || strings.Contains(out, "203.0.113.0/24") {
		t.Errorf("charon's selectors after its rekey:\n%s", out)
	}
}
