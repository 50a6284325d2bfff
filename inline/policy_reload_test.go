package inline

import (
	"math/rand/v2"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/espy-dpi/espy/ebpf"
	"github.com/espy-dpi/espy/policy"
	"github.com/espy-dpi/espy/policy/policytest"
	"github.com/rs/zerolog"
)

// TestReloadPolicy publishes one policy and then another into a loaded
// fast path: each reload switches the fast path's policy generation and
// the Go classifier of punted packets answers from the new rules. It logs
// what reloads of 1K and 10K random rules take.
func TestReloadPolicy(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to load the XDP program (run as root, as CI does)")
	}
	prog, err := ebpf.Load(ebpf.Config{})
	if err != nil {
		t.Skipf("BPF not available: %v", err)
	}
	t.Cleanup(func() { prog.Close() })
	d := &Daemon{prog: prog, log: zerolog.Nop()}
	pkt := policy.NewPacket(netip.MustParseAddr("198.51.100.7"), netip.MustParseAddr("203.0.113.200"), policy.ProtoTCP, 40000, 443)
	gen := uint32(0)
	for i, tc := range []struct {
		spd  string
		want policy.Action
	}{
		{"policy:\n  rules:\n    - {name: lab, src: 198.51.100.0/24, dst: 203.0.113.0/24, action: protect, sa: lab}\n", policy.ActionProtect},
		{"policy:\n  rules:\n    - {name: upper, src: 198.51.100.0/24, dst: 203.0.113.128/25, action: discard}\n" +
			"    - {name: lab, src: 198.51.100.0/24, dst: 203.0.113.0/24, action: protect, sa: lab}\n", policy.ActionDiscard},
	} {
		pol, err := policy.Parse("reload.yaml", []byte(tc.spd))
		if err != nil {
			t.Fatal(err)
		}
		if err := d.ReloadPolicy(pol); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
		st, err := prog.PolicyState()
		if err != nil {
			t.Fatal(err)
		}
		if !st.Loaded || st.Punt || st.Generation <= gen {
			t.Errorf("reload %d: fast path policy %+v, generation was %d", i, st, gen)
		}
		gen = st.Generation
		if v := d.set.Load().Lookup(&pkt); v.Action != tc.want {
			t.Errorf("reload %d: Go classifier says %v, want %v", i, v.Action, tc.want)
		}
	}

	rng := rand.New(rand.NewPCG(5, 4))
	for _, n := range []int{1000, 10000} {
		pol := &policy.Policy{Rules: policytest.Rules(rng, n, false), MaxEntries: policy.DefaultMaxEntries}
		start := time.Now()
		if err := d.ReloadPolicy(pol); err != nil {
			t.Fatalf("reload of %d rules: %v", n, err)
		}
		st, _ := prog.PolicyState()
		t.Logf("reload of %d rules: %v (fast path: loaded %v, punt %v)", n, time.Since(start).Round(time.Millisecond), st.Loaded, st.Punt)
	}
}
