package ebpf

import (
	"testing"
)

// BenchmarkXDPNullShape measures a decided null flow's packet in the
// shapes BenchmarkXDPNullPolicy (outer IPv4, ESP, inner IPv4/UDP, no pad)
// does not cover, each with an exact inner rule (count), so that every
// shape ends where that benchmark ends. The pad-* shapes measure the pad
// check: pad 0 skips it, every pad byte is compared, 16 at a time (one
// window for pads of 1 to 16 bytes, 16 windows for 255). wesp is a decided
// null flow over WESP, whose header is checked against the verdict.
func BenchmarkXDPNullShape(b *testing.B) {
	const spi = 0x950
	in4 := inner(b, 17, innerSrc4, innerDst4, 1000, 53)
	in6 := inner(b, 6, innerSrc6, innerDst6, 40000, 443)
	tunnel4 := espNull(spi, 1, 0, innerUDP4(1000, 53), 4, 12) // pad 0
	bridgePort := func(b *testing.B, p *Program) {
		if err := p.putBridgePort(loIfindex, loIfindex); err != nil {
			b.Fatal(err)
		}
	}
	udpKey := func(b *testing.B) FlowKey {
		k, err := NewFlowKey(outerSrc4, outerDst4, spi, EncapUDP, 4500, 4500)
		if err != nil {
			b.Fatal(err)
		}
		return k
	}
	wespKey := func(b *testing.B) FlowKey { return key4(b, spi, EncapWESP, 0, 0) }
	key6 := func(b *testing.B) FlowKey {
		k, err := NewFlowKey(outerSrc6, outerDst6, spi, EncapNone, 0, 0)
		if err != nil {
			b.Fatal(err)
		}
		return k
	}
	padded := func(pad int) []byte {
		return cat(eth(etherIPv4), ipv4(50, outerSrc4, outerDst4, espNullPad(spi, 0, innerUDP4(1000, 53), 4, 12, pad, -1), ip4opts{}))
	}
	for _, c := range []struct {
		name  string
		cfg   Config
		key   func(*testing.B) FlowKey
		v     Verdict
		rule  InnerKey
		setup func(*testing.B, *Program)
		frame []byte
		want  uint32
	}{
		{name: "udp-4500", key: udpKey, v: nullV, rule: in4,
			frame: cat(eth(etherIPv4), ipv4(17, outerSrc4, outerDst4, udp(4500, 4500, tunnel4), ip4opts{})), want: xdpPass},
		{name: "ipv6-outer", key: key6, v: nullV, rule: in4,
			frame: cat(eth(etherIPv6), ipv6(50, outerSrc6, outerDst6, tunnel4)), want: xdpPass},
		{name: "ipv6-inner", v: Verdict{Kind: VerdictNull, IcvLen: 12}, rule: in6,
			frame: cat(eth(etherIPv4), ipv4(50, outerSrc4, outerDst4, espNull(spi, 1, 0, innerTCP6(40000, 443), 41, 12), ip4opts{})), want: xdpPass},
		{name: "vlan", v: nullV, rule: in4,
			frame: cat(eth(etherIPv4, ether8021Q), ipv4(50, outerSrc4, outerDst4, tunnel4, ip4opts{})), want: xdpPass},
		{name: "qinq", v: nullV, rule: in4,
			frame: cat(eth(etherIPv4, ether8021AD, ether8021Q), ipv4(50, outerSrc4, outerDst4, tunnel4, ip4opts{})), want: xdpPass},
		// BPF_PROG_TEST_RUN returns XDP_REDIRECT without sending the
		// frame: this is the program with its bpf_redirect_map lookup,
		// not the devmap transmit.
		{name: "bridge", cfg: Config{Bridge: true}, setup: bridgePort, v: nullV, rule: in4,
			frame: cat(eth(etherIPv4), ipv4(50, outerSrc4, outerDst4, tunnel4, ip4opts{})), want: xdpRedirect},
		{name: "transport-tcp", v: Verdict{Kind: VerdictNull, IcvLen: 12, IvLen: 8, Mode: ModeTransport},
			rule:  inner(b, 6, outerSrc4, outerDst4, 5555, 22),
			frame: cat(eth(etherIPv4), ipv4(50, outerSrc4, outerDst4, espNull(spi, 1, 8, tcp(5555, 22, []byte("ssh")), 6, 12), ip4opts{})), want: xdpPass},
		{name: "pad-0", v: nullV, rule: in4, frame: padded(0), want: xdpPass},
		{name: "pad-3", v: nullV, rule: in4, frame: padded(3), want: xdpPass},
		{name: "pad-15", v: nullV, rule: in4, frame: padded(15), want: xdpPass},
		{name: "pad-16", v: nullV, rule: in4, frame: padded(16), want: xdpPass},
		{name: "pad-32", v: nullV, rule: in4, frame: padded(32), want: xdpPass},
		{name: "pad-128", v: nullV, rule: in4, frame: padded(128), want: xdpPass},
		{name: "pad-255", v: nullV, rule: in4, frame: padded(255), want: xdpPass},
		{name: "wesp", key: wespKey, v: nullV, rule: in4,
			frame: cat(eth(etherIPv4), ipv4(141, outerSrc4, outerDst4, wesp(4, 12, 12, 0, tunnel4), ip4opts{})), want: xdpPass},
	} {
		b.Run(c.name, func(b *testing.B) {
			p := benchProgram(b, c.cfg)
			if c.setup != nil {
				c.setup(b, p)
			}
			k := key4(b, spi, EncapNone, 0, 0)
			if c.key != nil {
				k = c.key(b)
			}
			mustVerdict(b, p, k, c.v)
			mustRule(b, p, c.rule, ActionCount)
			before, err := p.ExitCounters()
			if err != nil {
				b.Fatal(err)
			}
			benchXDP(b, p, c.frame, c.want)
			after, err := p.ExitCounters()
			if err != nil {
				b.Fatal(err)
			}
			// Every run must have taken the decided null path to the end.
			if n := after[ExitNullCount] - before[ExitNullCount]; n < uint64(b.N) {
				b.Fatalf("%d of %d packets ended in %v: %v", n, b.N, ExitNullCount, after)
			}
		})
	}
}
