package inline_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/espy-dpi/espy/ebpf"
	"github.com/espy-dpi/espy/flowcache"
	"github.com/espy-dpi/espy/heuristics"
	"github.com/espy-dpi/espy/packet"
	"github.com/espy-dpi/espy/policy"
	"github.com/espy-dpi/espy/policy/policytest"
)

// TestPuntThroughKernel runs the punt path end to end: a policy too large
// for the BPF maps makes the XDP program send packets of a decided null
// flow to userspace; the daemon answers from the Go classifier and stores
// the answer as an exact inner rule; the flow's later packets are then
// dropped in XDP by that rule, without further punts.
func TestPuntThroughKernel(t *testing.T) {
	l := newLab(t)
	d := l.start(t, "")
	s := l.sender(t)
	frame := nullFlows(t, 1, 0x7c0000)[0]
	spi := frameSPI(frame)

	// The flow's inner 5-tuple, read from the frame as the daemon reads it.
	var p packet.Packet
	var dec packet.Decoder
	if err := dec.Decode(packet.LinkTypeEthernet, frame, &p); err != nil {
		t.Fatal(err)
	}
	var in heuristics.Inner
	if !heuristics.Decapsulate(&heuristics.Verdict{Class: heuristics.Null, ICVLen: 16}, &p, &in) {
		t.Fatal("test frame: no inner packet at ICV length 16")
	}

	// A drop rule for this flow above 10,000 random rules: too large for
	// the fast path's tables, so it punts ESP-NULL packets.
	rng := rand.New(rand.NewPCG(7, 3))
	var sb strings.Builder
	fmt.Fprintf(&sb, "policy:\n  rules:\n    - {name: punt-drop, src: %s/32, dst: %s/32, protocol: %d, action: drop}\n", in.Src, in.Dst, in.Proto)
	top, err := policy.Parse("punt.yaml", []byte(sb.String()))
	if err != nil {
		t.Fatal(err)
	}
	rules := policytest.Rules(rng, 10000, false) // precedences 0, 10, 20, ...
	for i := range rules {
		rules[i].Precedence++
	}
	rules = append(top.Rules, rules...)
	if err := d.ReloadPolicy(&policy.Policy{Rules: rules, MaxEntries: policy.DefaultMaxEntries}); err != nil {
		t.Fatal(err)
	}
	if st, err := d.Program().PolicyState(); err != nil || !st.Punt {
		t.Fatalf("fast path policy %+v, %v: want punt", st, err)
	}
	pkt := policy.NewPacket(in.Src, in.Dst, in.Proto, in.SrcPort, in.DstPort)
	if v := policy.LinearLookup(rules, &pkt); v.Action != policy.ActionDrop || v.Rule != 0 {
		t.Fatalf("linear scan: %+v, want rule 0 (drop)", v)
	}
	k, err := ebpf.NewInnerKey(in.Proto, in.Src, in.Dst, in.SrcPort, in.DstPort)
	if err != nil {
		t.Fatal(err)
	}

	before, err := d.Program().ExitCounters()
	if err != nil {
		t.Fatal(err)
	}
	// Resend the frame until the answer is in the map: the first copy is
	// sampled and decided, a later one punted and answered.
	var rule ebpf.InnerRule
	for deadline := time.Now().Add(5 * time.Second); ; {
		if err := s.send(frame); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
		rule, err = d.Program().InnerRule(k)
		if err == nil {
			break
		}
		if !errors.Is(err, ebpf.ErrNotFound) || time.Now().After(deadline) {
			f, _ := d.Cache().Lookup(flowcache.NewKey(perfSrc, perfDst, spi))
			t.Fatalf("no inner rule for %v after 5 s: %v (flow %+v)", pkt, err, f.Verdict)
		}
	}
	if ebpf.Action(rule.Action) != ebpf.ActionDrop || rule.RuleId != 1 {
		t.Fatalf("stored inner rule %+v, want drop by rule 1", rule)
	}

	// Now the fast path drops the flow by itself.
	mid, err := d.Program().ExitCounters()
	if err != nil {
		t.Fatal(err)
	}
	const n = 20
	for range n {
		if err := s.send(frame); err != nil {
			t.Fatal(err)
		}
	}
	var after ebpf.ExitCounts
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if after, err = d.Program().ExitCounters(); err != nil {
			t.Fatal(err)
		}
		if after[ebpf.ExitNullDrop]-mid[ebpf.ExitNullDrop] >= n || time.Now().After(deadline) {
			break
		}
	}
	if got := after[ebpf.ExitNullDrop] - mid[ebpf.ExitNullDrop]; got != n {
		t.Errorf("null-drop exits for %d packets after the answer: %d", n, got)
	}
	if got := after[ebpf.ExitNullAllow] - mid[ebpf.ExitNullAllow]; got != 0 {
		t.Errorf("null-allow exits after the answer: %d", got)
	}
	t.Logf("exits before the answer: sampled %d, null-allow %d, null-drop %d; after: null-drop %d",
		mid[ebpf.ExitPendingSampled]-before[ebpf.ExitPendingSampled], mid[ebpf.ExitNullAllow]-before[ebpf.ExitNullAllow],
		mid[ebpf.ExitNullDrop]-before[ebpf.ExitNullDrop], after[ebpf.ExitNullDrop]-mid[ebpf.ExitNullDrop])
}
