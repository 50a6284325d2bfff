package ebpf

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/espy-dpi/espy/policy"
	pbpf "github.com/espy-dpi/espy/policy/bpf"
	"github.com/espy-dpi/espy/policy/classbench"
	"github.com/espy-dpi/espy/policy/policytest"
)

const policySPI = 0x7001

// policyProgram loads a program with one ESP-NULL tunnel SA (outer IPv4,
// SPI policySPI, ICV 12) and sampling off, so that punts fail open with
// ExitPendingOverLimit.
func policyProgram(t testing.TB, cfg Config) *Program {
	t.Helper()
	cfg.DisableSampling = true
	p := loadTest(t, smallMaps(cfg))
	mustVerdict(t, p, key4(t, policySPI, EncapNone, 0, 0), Verdict{Kind: VerdictNull, IcvLen: 12, Mode: ModeTunnel})
	return p
}

// portProto: the inner protocols whose first four bytes the program reads
// as ports (has_ports in espy.c).
func portProto(proto uint8) bool {
	switch proto {
	case 6, 17, 33, 132, 136:
		return true
	}
	return false
}

func icmpProto(proto uint8) bool { return proto == 1 || proto == 58 }

// wireable adjusts a policy packet to what a frame can carry and the program
// reads: no label on the wire, ports 0 for protocols without ports. It
// reports false for packets no frame can carry as such (an IPv4 family with
// a wider address, an IPv6 next header the program would walk as an
// extension header).
func wireable(p *policy.Packet) bool {
	p.Label = 0
	switch {
	case icmpProto(p.Proto):
		p.DPort = 0
	case !portProto(p.Proto):
		p.SPort, p.DPort = 0, 0
	}
	if p.Family == 4 {
		return p.Src.Hi == 0 && p.Src.Lo <= 0xffffffff && p.Dst.Hi == 0 && p.Dst.Lo <= 0xffffffff
	}
	switch p.Proto {
	case 0, 43, 44, 60:
		return false
	}
	return p.Family == 6
}

// packetFrame builds the ESP-NULL frame of p with the test helpers, apart
// from PolicyFrame: outer IPv4, tunnel mode, inner IPv4 or IPv6.
func packetFrame(p *policy.Packet) []byte {
	var l4 []byte
	switch {
	case p.Proto == 6:
		l4 = tcp(p.SPort, p.DPort, []byte("inner"))
	case p.Proto == 17:
		l4 = udp(p.SPort, p.DPort, []byte("inner"))
	case icmpProto(p.Proto):
		l4 = []byte{byte(p.SPort >> 8), byte(p.SPort), 0, 0, 0, 0, 0, 0, 'p', 'i', 'n', 'g'}
	default:
		l4 = []byte{byte(p.SPort >> 8), byte(p.SPort), byte(p.DPort >> 8), byte(p.DPort), 1, 2, 3, 4, 5, 6, 7, 8}
	}
	src := policy.U128Addr(p.Family, p.Src)
	dst := policy.U128Addr(p.Family, p.Dst)
	var in []byte
	nh := uint8(4)
	if p.Family == 4 {
		in = ipv4(p.Proto, src, dst, l4, ip4opts{})
	} else {
		nh = 41
		in = ipv6(p.Proto, src, dst, l4)
	}
	return cat(eth(etherIPv4), ipv4(50, outerSrc4, outerDst4, espNull(policySPI, 1, 0, in, nh, 12), ip4opts{}))
}

// outcome is what the program does with a packet whose inner policy action
// is a (a policy.Action, or pbpf.ActionPunt), with sampling off, fail-open
// and the inner default pass.
func outcome(a policy.Action) (uint32, ExitReason) {
	switch a {
	case policy.ActionProtect, policy.ActionBypass, policy.ActionAllow, policy.ActionNone:
		return xdpPass, ExitNullAllow
	case policy.ActionDiscard, policy.ActionDrop:
		return xdpDrop, ExitNullDrop
	case policy.ActionLog:
		return xdpPass, ExitNullCount
	}
	return xdpPass, ExitPendingOverLimit
}

// refAction is the action the Go reference gives: the deciding range's, or
// the compiled miss action.
func refAction(c *pbpf.Compiled, p *policy.Packet) policy.Action {
	r, ok := c.Lookup(p)
	if !ok {
		return policy.Action(c.Meta.MissAction)
	}
	return policy.Action(r.Action)
}

// checkPacket runs p through the program and compares with want.
func checkPacket(t *testing.T, prog *Program, p *policy.Packet, want policy.Action, what string) {
	t.Helper()
	ret, _, d := run(t, prog, packetFrame(p))
	wantRet, wantReason := outcome(want)
	if r := onlyReason(t, d); ret != wantRet || r != wantReason {
		t.Fatalf("%s: %v: XDP %d/%v, want %d/%v (action %v)", what, p, ret, r, wantRet, wantReason, want)
	}
}

func TestPolicyBasic(t *testing.T) {
	requireBPF(t)
	prog := policyProgram(t, Config{})
	rule := func(name string, a policy.Action, src string, proto int, dport uint16) policy.Rule {
		b := policy.FullBox()
		iv, fam, err := policy.ParseAddrRange(src)
		if err != nil {
			t.Fatal(err)
		}
		b[policy.DimFamily] = policy.Span(uint64(fam), uint64(fam))
		b[policy.DimSrc] = iv
		if proto >= 0 {
			b[policy.DimProto] = policy.Span(uint64(proto), uint64(proto))
		}
		if dport > 0 {
			b[policy.DimDPort] = policy.Span(uint64(dport), uint64(dport))
		}
		return policy.Rule{Name: name, Box: b, Action: a}
	}
	rules := []policy.Rule{
		rule("dns-drop", policy.ActionDrop, "198.51.100.0/24", 17, 53),
		rule("icmp-log", policy.ActionLog, "198.51.100.0/24", 1, 0),
		rule("net-allow", policy.ActionAllow, "198.51.100.0/24", -1, 0),
		rule("v6-discard", policy.ActionDiscard, "2001:db8:1::/48", 6, 443),
	}
	c, err := pbpf.CompileRules(rules, pbpf.Options{MissAction: pbpf.ActionPunt})
	if err != nil {
		t.Fatal(err)
	}
	pk := func(src, dst string, proto uint8, sport, dport uint16) policy.Packet {
		return policy.NewPacketFromStrings(src, dst, proto, sport, dport)
	}
	dns := pk("198.51.100.10", "203.0.113.20", 17, 1000, 53)
	other := pk("198.51.100.10", "203.0.113.20", 17, 1000, 54)
	ping := pk("198.51.100.10", "203.0.113.20", 1, 8<<8, 0)
	v6 := pk("2001:db8:1::10", "2001:db8:2::20", 6, 40000, 443)
	miss := pk("192.0.2.99", "203.0.113.20", 17, 1000, 53)

	// No policy: today's behaviour (default pass).
	checkPacket(t, prog, &dns, policy.ActionNone, "no policy")
	if err := prog.LoadPolicy(c); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		p    policy.Packet
		want policy.Action
	}{{dns, policy.ActionDrop}, {other, policy.ActionAllow}, {ping, policy.ActionLog}, {v6, policy.ActionDiscard}, {miss, pbpf.ActionPunt}} {
		if ref := refAction(c, &tc.p); ref != tc.want {
			t.Fatalf("%v: reference %v, test expects %v", tc.p, ref, tc.want)
		}
		checkPacket(t, prog, &tc.p, tc.want, "policy")
	}
	// The exact stage answers first.
	mustRule(t, prog, inner(t, 17, innerSrc4, innerDst4, 1000, 53), ActionCount)
	checkPacket(t, prog, &dns, policy.ActionLog, "exact rule over policy")
	if err := prog.DeleteInnerRule(inner(t, 17, innerSrc4, innerDst4, 1000, 53)); err != nil {
		t.Fatal(err)
	}
	// Too large: punt.
	if err := prog.PublishPolicy(nil, pbpf.ErrTooLargeForBPF); err != nil {
		t.Fatal(err)
	}
	checkPacket(t, prog, &other, pbpf.ActionPunt, "punt")
	if err := prog.PublishPolicy(nil, errors.New("other")); err == nil {
		t.Error("PublishPolicy with a compile error: nil")
	}
	st, err := prog.PolicyState()
	if err != nil || !st.Punt || st.Loaded {
		t.Errorf("state %+v %v, want punt", st, err)
	}
	if err := prog.ClearPolicy(); err != nil {
		t.Fatal(err)
	}
	checkPacket(t, prog, &dns, policy.ActionNone, "cleared")
	// Again, into the other set.
	if err := prog.LoadPolicy(c); err != nil {
		t.Fatal(err)
	}
	checkPacket(t, prog, &dns, policy.ActionDrop, "reloaded")
	// An empty policy: every packet takes the miss action.
	empty, err := pbpf.CompileRules(nil, pbpf.Options{MissAction: policy.ActionDrop})
	if err != nil {
		t.Fatal(err)
	}
	if err := prog.LoadPolicy(empty); err != nil {
		t.Fatal(err)
	}
	checkPacket(t, prog, &other, policy.ActionDrop, "empty policy")
	if err := prog.LoadPolicy(c); err != nil {
		t.Fatal(err)
	}
	s, err := prog.PolicyStats()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("stats %v", s)
	if s[PolicyExact] != 1 || s[PolicyPunt] != 2 || s[PolicyDefault] != 2 || s[PolicyHit] != 5 || s[PolicyMiss] != 2 {
		t.Errorf("stats %v", s)
	}
	if st, err := prog.PolicyState(); err != nil || !st.Loaded || st.Punt || st.Generation != 6 {
		t.Errorf("state %+v %v, want loaded, generation 6", st, err)
	}
	prog.Close()
	if err := prog.LoadPolicy(c); !errors.Is(err, ErrClosed) {
		t.Errorf("LoadPolicy after Close: %v, want ErrClosed", err)
	}
}

// TestPolicyProperty: for random policies (ordered and decorrelated, random
// miss actions) and random inner packets in real ESP-NULL frames, the XDP
// action equals the Go reference lookup's and the linear first match's.
func TestPolicyProperty(t *testing.T) {
	requireBPF(t)
	prog := policyProgram(t, Config{})
	misses := []policy.Action{policy.ActionNone, policy.ActionDrop, policy.ActionLog, pbpf.ActionPunt}
	checked, tooLarge := 0, 0
	for seed := uint64(1); seed <= 40; seed++ {
		rng := rand.New(rand.NewPCG(seed, 99))
		rules := policytest.Rules(rng, 3+rng.IntN(40), true)
		opt := pbpf.Options{MissAction: misses[rng.IntN(len(misses))]}
		if seed%3 == 0 {
			opt.MaxTables = 4 + rng.IntN(6) // force merged tables
		}
		var c *pbpf.Compiled
		var err error
		if seed%2 == 0 {
			c, err = pbpf.CompileRules(rules, opt)
		} else {
			var d *policy.Decorrelated
			if d, err = policy.Decorrelate(rules, 1<<16); err != nil {
				t.Fatal(err)
			}
			c, err = pbpf.CompileDecorrelated(d, opt)
		}
		if errors.Is(err, pbpf.ErrTooLargeForBPF) {
			tooLarge++
			if err := prog.PublishPolicy(c, err); err != nil {
				t.Fatal(err)
			}
			pk := policytest.Packets(rng, rules, 20)
			for i := range pk {
				if wireable(&pk[i]) {
					checkPacket(t, prog, &pk[i], pbpf.ActionPunt, "too large")
				}
			}
			continue
		}
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		if err := prog.LoadPolicy(c); err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		for _, p := range policytest.Packets(rng, rules, 250) {
			if !wireable(&p) {
				continue
			}
			ref := refAction(c, &p)
			lin := policy.LinearLookup(rules, &p)
			linA := lin.Action
			if linA == policy.ActionNone {
				linA = opt.MissAction
			}
			if ref != linA {
				t.Fatalf("seed %d: %v: reference %v, linear %v", seed, p, ref, linA)
			}
			checkPacket(t, prog, &p, ref, fmt.Sprintf("seed %d", seed))
			checked++
		}
	}
	t.Logf("%d packets checked, %d policies too large (punted)", checked, tooLarge)
	if checked < 4000 {
		t.Errorf("only %d packets checked", checked)
	}
}

// TestPolicyFinalHonoured checks that the XDP loop stops at a final hit:
// with every range's final flag forced on, the program must answer as the
// Go reference over the same wrong flags, which differs from the linear
// scan on some packets. A loop that ignored the flag would give the linear
// answer there and fail.
func TestPolicyFinalHonoured(t *testing.T) {
	requireBPF(t)
	prog := policyProgram(t, Config{})
	differ := 0
	for seed := uint64(1); seed <= 20; seed++ {
		rng := rand.New(rand.NewPCG(seed, 7))
		rules := policytest.Rules(rng, 5+rng.IntN(30), true)
		c, err := pbpf.CompileRules(rules, pbpf.Options{})
		if errors.Is(err, pbpf.ErrTooLargeForBPF) {
			continue
		}
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		for i := range c.Ranges {
			c.Ranges[i].Final = true
		}
		if err := prog.LoadPolicy(c); err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		for _, p := range policytest.Packets(rng, rules, 250) {
			if !wireable(&p) {
				continue
			}
			ref := refAction(c, &p)
			lin := policy.LinearLookup(rules, &p).Action
			ret, reason := outcome(ref)
			if lret, lreason := outcome(lin); ret != lret || reason != lreason {
				differ++
			}
			checkPacket(t, prog, &p, ref, fmt.Sprintf("seed %d, all final", seed))
		}
	}
	if differ == 0 {
		t.Error("forcing every final flag on changed no outcome: the test cannot tell whether XDP reads the flag")
	}
	t.Logf("%d packets where a final stop changes the outcome", differ)
}

// varyActions gives ClassBench rules (all protect) rotating actions, so that
// the XDP outcome (pass, drop, count) tells rules apart.
func varyActions(rules []policy.Rule) []policy.Rule {
	acts := []policy.Action{policy.ActionDrop, policy.ActionAllow, policy.ActionLog, policy.ActionDiscard, policy.ActionProtect}
	for i := range rules {
		rules[i].Action = acts[i%len(acts)]
	}
	return rules
}

// TestPolicyClassBench runs the shipped ClassBench subsets' traces through
// the program, ordered and decorrelated.
func TestPolicyClassBench(t *testing.T) {
	requireBPF(t)
	prog := policyProgram(t, Config{})
	for _, name := range []string{"acl1_300", "fw1_300"} {
		fs, err := classbench.LoadFilters(filepath.Join("../policy/classbench/testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		hs, err := classbench.LoadTrace(filepath.Join("../policy/classbench/testdata", name+".trace"))
		if err != nil {
			t.Fatal(err)
		}
		rules := varyActions(classbench.Rules(fs))
		d, err := policy.Decorrelate(rules, 200000)
		if err != nil {
			t.Fatal(err)
		}
		ord, err := pbpf.CompileRules(rules, pbpf.Options{MissAction: pbpf.ActionPunt})
		if err != nil {
			t.Fatal(err)
		}
		dis, err := pbpf.CompileDecorrelated(d, pbpf.Options{MissAction: pbpf.ActionPunt})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []*pbpf.Compiled{ord, dis} {
			if err := prog.LoadPolicy(c); err != nil {
				t.Fatal(err)
			}
			n := 0
			for i := 0; i < len(hs); i += 3 { // every third header keeps the test short
				p := hs[i].Packet
				if !wireable(&p) {
					continue
				}
				ref := refAction(c, &p)
				if lin := policy.LinearLookup(rules, &p); lin.Action != ref && !(lin.Action == policy.ActionNone && ref == pbpf.ActionPunt) {
					t.Fatalf("%s header %d: reference %v, linear %v", name, i+1, ref, lin.Action)
				}
				checkPacket(t, prog, &p, ref, name)
				n++
			}
			t.Logf("%s (disjoint=%v): %d headers, %d tables, %d keys", name, c.Meta.Flags&pbpf.FlagDisjoint != 0, n, len(c.Tables), len(c.Keys))
		}
	}
}

// atomicPolicy returns rules that end with a catch-all of action last, so
// that the compiled set never misses.
func atomicPolicy(seed uint64, last policy.Action) []policy.Rule {
	rng := rand.New(rand.NewPCG(seed, 5))
	rules := policytest.Rules(rng, 30, true)
	return append(rules, policy.Rule{Name: "all", Box: policy.FullBox(), Action: last, Precedence: 1 << 20})
}

// TestPolicyPublishAtomic publishes policies A and B alternately, each
// into the set the fast path is not reading, while another goroutine
// classifies packets: every answer must be A's or B's, and since neither
// misses nor punts, no lookup may miss or punt (a half-written or mixed
// set would).
func TestPolicyPublishAtomic(t *testing.T) {
	requireBPF(t)
	prog := policyProgram(t, Config{})
	ra, rb := atomicPolicy(1, policy.ActionDrop), atomicPolicy(2, policy.ActionAllow)
	ca, err := pbpf.CompileRules(ra, pbpf.Options{MissAction: pbpf.ActionPunt})
	if err != nil {
		t.Fatal(err)
	}
	cb, err := pbpf.CompileRules(rb, pbpf.Options{MissAction: pbpf.ActionPunt})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 3))
	var frames [][]byte
	var okA, okB []uint32
	for _, p := range policytest.Packets(rng, append(ra, rb...), 400) {
		if !wireable(&p) {
			continue
		}
		a, _ := outcome(refAction(ca, &p))
		b, _ := outcome(refAction(cb, &p))
		frames, okA, okB = append(frames, packetFrame(&p)), append(okA, a), append(okB, b)
	}
	if err := prog.LoadPolicy(ca); err != nil {
		t.Fatal(err)
	}
	before, err := prog.PolicyStats()
	if err != nil {
		t.Fatal(err)
	}

	var stop atomic.Bool
	var wg sync.WaitGroup
	var publications int
	var pubErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; !stop.Load(); i++ {
			c := cb
			if i%2 == 1 {
				c = ca
			}
			if err := prog.LoadPolicy(c); err != nil {
				pubErr = err
				return
			}
			publications++
		}
	}()
	deadline := time.Now().Add(1500 * time.Millisecond)
	runs := 0
	out := make([]byte, 2048)
	for time.Now().Before(deadline) {
		for i, f := range frames {
			ret, err := prog.XDP().Run(&ebpf.RunOptions{Data: f, DataOut: out, Context: xdpMd{DataEnd: uint32(len(f)), IngressIfindex: loIfindex}})
			if err != nil {
				t.Fatal(err)
			}
			if ret != okA[i] && ret != okB[i] {
				t.Fatalf("frame %d: XDP %d, A says %d, B says %d", i, ret, okA[i], okB[i])
			}
			runs++
		}
	}
	stop.Store(true)
	wg.Wait()
	if pubErr != nil {
		t.Fatal(pubErr)
	}
	after, err := prog.PolicyStats()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d runs over %d publications; hits %d, retries %d", runs, publications, after[PolicyHit]-before[PolicyHit], after[PolicyRetry]-before[PolicyRetry])
	if after[PolicyMiss] != before[PolicyMiss] || after[PolicyPunt] != before[PolicyPunt] {
		t.Errorf("lookups missed (%d) or punted (%d) during publications", after[PolicyMiss]-before[PolicyMiss], after[PolicyPunt]-before[PolicyPunt])
	}
	if publications < 10 {
		t.Errorf("only %d publications", publications)
	}
}

// TestPolicyFrame checks the exported frame builder against the program.
func TestPolicyFrame(t *testing.T) {
	requireBPF(t)
	prog := policyProgram(t, Config{})
	rules := atomicPolicy(4, policy.ActionLog)
	c, err := pbpf.CompileRules(rules, pbpf.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := prog.LoadPolicy(c); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(4, 4))
	for _, p := range policytest.Packets(rng, rules, 300) {
		if !wireable(&p) {
			continue
		}
		f := PolicyFrame(&p, policySPI, 12)
		ret, _, d := run(t, prog, f)
		wantRet, wantReason := outcome(refAction(c, &p))
		if r := onlyReason(t, d); ret != wantRet || r != wantReason {
			t.Fatalf("%v: XDP %d/%v, want %d/%v", p, ret, r, wantRet, wantReason)
		}
	}
}

// TestPolicyPuntSamples: a punted packet is copied to userspace beyond the
// per-flow sample count (which belongs to unknown flows) and gets the fail
// mode.
func TestPolicyPuntSamples(t *testing.T) {
	requireBPF(t)
	pinCPU(t)
	prog := loadTest(t, smallMaps(Config{SampleCount: 1, NoRateLimit: true, FailClosed: true}))
	r := sampleReader(t, prog)
	k := key4(t, policySPI, EncapNone, 0, 0)
	mustVerdict(t, prog, k, Verdict{Kind: VerdictNull, IcvLen: 12, Mode: ModeTunnel})
	c, err := pbpf.CompileRules(atomicPolicy(7, policy.ActionDrop)[:5], pbpf.Options{MissAction: pbpf.ActionPunt})
	if err != nil {
		t.Fatal(err)
	}
	if err := prog.LoadPolicy(c); err != nil {
		t.Fatal(err)
	}
	p := policy.NewPacketFromStrings("203.0.113.1", "203.0.113.2", 17, 1, 2)
	if refAction(c, &p) != pbpf.ActionPunt {
		t.Fatalf("%v is not punted by the test policy", p)
	}
	frame := packetFrame(&p)
	var s Sample
	for i := range 3 {
		ret, _, d := run(t, prog, frame)
		if got := onlyReason(t, d); got != ExitPendingSampled || ret != xdpDrop {
			t.Fatalf("punt %d: %v/%d, want pending-sampled/drop", i, got, ret)
		}
		readSample(t, r, &s)
		if s.Key != k || len(s.Frame) != len(frame) {
			t.Fatalf("punt %d: sample key %v, %d bytes", i, s.Key, len(s.Frame))
		}
	}
	st, err := prog.PolicyStats()
	if err != nil {
		t.Fatal(err)
	}
	// One walk (a miss), then the SPD cache answers.
	if st[PolicyPunt] != 3 || st[PolicyMiss] != 1 || st[PolicyCacheHit] != 2 {
		t.Errorf("stats %v, want 3 punts after 1 miss and 2 cache hits", st)
	}
}

// TestPolicySharedClassBench checks the 1K and 10K ClassBench sets (ordered)
// on a sample of their trace headers, when the shared data is present.
func TestPolicySharedClassBench(t *testing.T) {
	requireBPF(t)
	for _, name := range []string{"acl1_1K", "fw1_1K", "ipc1_1K", "acl1_10K", "fw1_10K", "ipc1_10K"} {
		t.Run(name, func(t *testing.T) {
			rp := filepath.Join(sharedClassBench, "rules", name)
			fs, err := classbench.LoadFilters(rp)
			if err != nil {
				t.Skipf("shared ClassBench data not available (%v); it lives in ../shared/classbench from the repo root", err)
			}
			hs, err := classbench.LoadTrace(filepath.Join(sharedClassBench, "traces", name+"_trace"))
			if err != nil {
				t.Fatal(err)
			}
			rules := varyActions(classbench.Rules(fs))
			c, err := pbpf.CompileRules(rules, pbpf.Options{MissAction: pbpf.ActionPunt})
			if err != nil {
				t.Skipf("%v (flows would be punted)", err)
			}
			prog := policyProgram(t, Config{})
			if err := prog.LoadPolicy(c); err != nil {
				t.Fatal(err)
			}
			lin := policy.NewLinear(rules)
			n := 0
			for i := 0; i < len(hs) && n < 300; i += 1 + len(hs)/300 {
				p := hs[i].Packet
				if !wireable(&p) {
					continue
				}
				ref := refAction(c, &p)
				if l := lin.Lookup(&p); l.Action != ref && !(l.Action == policy.ActionNone && ref == pbpf.ActionPunt) {
					t.Fatalf("header %d: reference %v, linear %v", i+1, ref, l.Action)
				}
				checkPacket(t, prog, &p, ref, name)
				n++
			}
		})
	}
}
