package ebpf

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/espy-dpi/espy/policy"
	pbpf "github.com/espy-dpi/espy/policy/bpf"
	"github.com/espy-dpi/espy/policy/policytest"
)

// TestSPDCacheConsistency: with the SPD cache, every answer equals the
// uncached walk's and the reference lookup's, on the packet that fills the
// cache and on the one the cache answers, for random policies published one
// after the other into the same program, so that every publication meets a
// cache full of the previous policy's answers.
func TestSPDCacheConsistency(t *testing.T) {
	requireBPF(t)
	cached := policyProgram(t, Config{})
	uncached := policyProgram(t, Config{NoSPDCache: true})
	misses := []policy.Action{policy.ActionNone, policy.ActionDrop, policy.ActionLog, pbpf.ActionPunt}
	rng := rand.New(rand.NewPCG(7, 3))
	// A fixed packet set across policies: the cache holds answers for
	// exactly these tuples when the next policy is published.
	base := policytest.Rules(rng, 30, true)
	packets := policytest.Packets(rng, base, 300)
	checked := 0
	for seed := uint64(1); seed <= 16; seed++ {
		rng := rand.New(rand.NewPCG(seed, 17))
		rules := policytest.Rules(rng, 3+rng.IntN(30), true)
		if seed%4 == 0 {
			rules = base // policies that match the packet set closely
		}
		opt := pbpf.Options{MissAction: misses[rng.IntN(len(misses))]}
		c, err := pbpf.CompileRules(rules, opt)
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		for _, p := range []*Program{cached, uncached} {
			if err := p.LoadPolicy(c); err != nil {
				t.Fatalf("seed %d: %v", seed, err)
			}
		}
		pk := append(policytest.Packets(rng, rules, 100), packets...)
		for i := range pk {
			if !wireable(&pk[i]) {
				continue
			}
			want := refAction(c, &pk[i])
			what := fmt.Sprintf("seed %d", seed)
			checkPacket(t, uncached, &pk[i], want, what+" uncached")
			checkPacket(t, cached, &pk[i], want, what+" fill")
			checkPacket(t, cached, &pk[i], want, what+" cached")
			checked++
		}
	}
	st, err := cached.PolicyStats()
	if err != nil {
		t.Fatal(err)
	}
	ust, err := uncached.PolicyStats()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d packets, cached program %v, uncached %v", checked, st, ust)
	if st[PolicyCacheHit] < uint64(checked) || ust[PolicyCacheHit] != 0 {
		t.Errorf("cache hits %d (want at least %d), uncached %d", st[PolicyCacheHit], checked, ust[PolicyCacheHit])
	}
}

// TestSPDCachePublication: a cached answer is not used after a publication
// that changes it, nor after ClearPolicy, nor after PuntPolicy.
func TestSPDCachePublication(t *testing.T) {
	requireBPF(t)
	prog := policyProgram(t, Config{})
	p := policy.NewPacketFromStrings("192.0.2.1", "198.51.100.2", 6, 1234, 443)
	rule := func(a policy.Action) []policy.Rule {
		return []policy.Rule{{Name: "r", Box: policy.FullBox(), Action: a}}
	}
	publish := func(a policy.Action) {
		t.Helper()
		c, err := pbpf.CompileRules(rule(a), pbpf.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := prog.LoadPolicy(c); err != nil {
			t.Fatal(err)
		}
	}
	publish(policy.ActionDrop)
	checkPacket(t, prog, &p, policy.ActionDrop, "drop policy")
	checkPacket(t, prog, &p, policy.ActionDrop, "drop policy, cached")
	publish(policy.ActionAllow)
	checkPacket(t, prog, &p, policy.ActionAllow, "allow policy after drop")
	checkPacket(t, prog, &p, policy.ActionAllow, "allow policy, cached")
	if err := prog.PuntPolicy(); err != nil {
		t.Fatal(err)
	}
	checkPacket(t, prog, &p, pbpf.ActionPunt, "punt")
	if err := prog.ClearPolicy(); err != nil {
		t.Fatal(err)
	}
	checkPacket(t, prog, &p, policy.ActionAllow, "cleared (default allow)")
	publish(policy.ActionLog)
	checkPacket(t, prog, &p, policy.ActionLog, "log policy")
	// An exact rule still overrides the SPD, cached or not.
	k, err := NewInnerKey(6, netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.2"), 1234, 443)
	if err != nil {
		t.Fatal(err)
	}
	if err := prog.SetInnerRule(k, ActionDrop, 1); err != nil {
		t.Fatal(err)
	}
	checkPacket(t, prog, &p, policy.ActionDrop, "exact rule over a cached SPD answer")
	// Without rules the program skips the exact stage; the last delete
	// turns that back on, and the cached SPD answer is what remains.
	if err := prog.DeleteInnerRule(k); err != nil {
		t.Fatal(err)
	}
	checkPacket(t, prog, &p, policy.ActionLog, "exact rule deleted")
	if err := prog.SetInnerRule(k, ActionDrop, 1); err != nil {
		t.Fatal(err)
	}
	if err := prog.SetInnerRule(k, ActionPass, 2); err != nil { // replaced, still one rule
		t.Fatal(err)
	}
	checkPacket(t, prog, &p, policy.ActionAllow, "exact rule replaced")
	if err := prog.DeleteInnerRule(k); err != nil {
		t.Fatal(err)
	}
	checkPacket(t, prog, &p, policy.ActionLog, "exact rule deleted again")
	if prog.innerRules != 0 {
		t.Errorf("%d inner rules counted, want 0", prog.innerRules)
	}
}
