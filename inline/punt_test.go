package inline

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"os"
	"testing"

	"github.com/espy-dpi/espy/ebpf"
	"github.com/espy-dpi/espy/heuristics"
	"github.com/espy-dpi/espy/packet"
	"github.com/espy-dpi/espy/policy"
	pbpf "github.com/espy-dpi/espy/policy/bpf"
	"github.com/espy-dpi/espy/policy/classify"
	"github.com/espy-dpi/espy/policy/policytest"
	"github.com/rs/zerolog"
)

// nullESP returns a tunnel-mode ESP-NULL packet (no IV, 12-byte ICV)
// carrying an IPv4 datagram from src to dst with the given protocol and,
// for TCP and UDP, ports.
func nullESP(src, dst netip.Addr, proto uint8, sport, dport uint16) []byte {
	inner := make([]byte, 20+20)
	inner[0], inner[3], inner[8], inner[9] = 0x45, byte(len(inner)), 64, proto
	s, d := src.As4(), dst.As4()
	copy(inner[12:16], s[:])
	copy(inner[16:20], d[:])
	inner[20], inner[21] = byte(sport>>8), byte(sport)
	inner[22], inner[23] = byte(dport>>8), byte(dport)
	esp := []byte{0, 0, 0x10, 0x01, 0, 0, 0, 1} // SPI 0x1001, sequence 1
	esp = append(esp, inner...)
	esp = append(esp, 1, 2, 2, 4) // padding 1 2, pad length 2, next header IPv4
	return append(esp, make([]byte, 12)...)
}

// TestPuntedFlowGetsGoAnswer loads the fast path, publishes a policy that
// does not fit the BPF budget (so the fast path punts ESP-NULL flows to
// userspace), and hands punted packets to the daemon: the inner rule it
// stores for each flow must carry the action and rule of the linear
// first-match scan, which the Go classifier must therefore have answered.
func TestPuntedFlowGetsGoAnswer(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to load the XDP program (run as root, as CI does)")
	}
	prog, err := ebpf.Load(ebpf.Config{})
	if err != nil {
		t.Skipf("BPF not available: %v", err)
	}
	t.Cleanup(func() { prog.Close() })

	rng := rand.New(rand.NewPCG(4, 1))
	rules := policytest.Rules(rng, 80, false)
	// A one-table budget stands in for a policy too large for the maps.
	_, cerr := pbpf.CompileRules(rules, pbpf.Options{MaxTables: 1})
	if !errors.Is(cerr, pbpf.ErrTooLargeForBPF) {
		t.Fatalf("compile under a one-table budget: %v, want ErrTooLargeForBPF", cerr)
	}
	if err := prog.PublishPolicy(nil, cerr); err != nil {
		t.Fatalf("publish (punt): %v", err)
	}
	set, err := classify.Build(rules, false, 0)
	if err != nil {
		t.Fatal(err)
	}
	d := &Daemon{prog: prog, log: zerolog.Nop()}
	d.set.Store(set)
	v := &heuristics.Verdict{Class: heuristics.Null, ICVLen: 12}
	outerSrc, outerDst := netip.MustParseAddr("203.0.113.1"), netip.MustParseAddr("203.0.113.2")

	stored, none := 0, 0
	for _, pk := range policytest.Packets(rng, rules, 400) {
		if pk.Family != 4 || (pk.Proto != policy.ProtoTCP && pk.Proto != policy.ProtoUDP && pk.Proto != policy.ProtoESP) {
			continue // punted() leaves ICMP to the default; IPv6 inner is not built here
		}
		src, dst := policy.U128Addr(4, pk.Src), policy.U128Addr(4, pk.Dst)
		sport, dport := pk.SPort, pk.DPort
		if pk.Proto == policy.ProtoESP {
			sport, dport = 0, 0
		}
		p := &packet.Packet{Kind: packet.KindESP, Src: outerSrc, Dst: outerDst, ESP: nullESP(src, dst, pk.Proto, sport, dport)}
		d.punted(v, p)

		want := policy.NewPacket(src, dst, pk.Proto, sport, dport)
		wv := policy.LinearLookup(rules, &want)
		k, err := ebpf.NewInnerKey(pk.Proto, src, dst, sport, dport)
		if err != nil {
			t.Fatal(err)
		}
		got, err := prog.InnerRule(k)
		if wv.Action == policy.ActionNone {
			if !errors.Is(err, ebpf.ErrNotFound) {
				t.Errorf("%v: no rule matches, but an inner rule is stored: %+v, %v", want, got, err)
			}
			none++
			continue
		}
		if err != nil {
			t.Fatalf("%v: no inner rule stored: %v", want, err)
		}
		wa := ebpf.ActionPass
		switch wv.Action {
		case policy.ActionDrop, policy.ActionDiscard:
			wa = ebpf.ActionDrop
		case policy.ActionLog:
			wa = ebpf.ActionCount
		}
		if ebpf.Action(got.Action) != wa || got.RuleId != uint32(wv.Rule+1) {
			t.Errorf("%v: stored action %d rule %d, want action %d rule %d (%s)", want, got.Action, got.RuleId, wa, wv.Rule+1, wv.Name)
		}
		if err := prog.DeleteInnerRule(k); err != nil {
			t.Fatal(err)
		}
		stored++
	}
	if stored < 50 || none == 0 {
		t.Errorf("%d flows answered with a rule and %d with none; the draw should give both", stored, none)
	}
	t.Logf("%d punted flows answered with the linear scan's rule, %d left to the default", stored, none)
}
