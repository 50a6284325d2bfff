package ebpf

import (
	"bytes"
	"net/netip"
	"os"
	"runtime"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// xdpMd is struct xdp_md, the context of a test run.
type xdpMd struct {
	Data, DataEnd, DataMeta, IngressIfindex, RxQueueIndex, EgressIfindex uint32
}

const loIfindex = 1

// pinCPU keeps the test on one CPU: the rate limiter's state is per CPU.
func pinCPU(t *testing.T) {
	t.Helper()
	runtime.LockOSThread()
	t.Cleanup(runtime.UnlockOSThread)
	var set, old unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		t.Fatalf("sched_getaffinity: %v", err)
	}
	for c := range 1024 {
		if old.IsSet(c) {
			set.Set(c)
			break
		}
	}
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		t.Fatalf("sched_setaffinity: %v", err)
	}
	t.Cleanup(func() { unix.SchedSetaffinity(0, &old) })
}

// small shrinks the maps so that a test loads in milliseconds.
func smallMaps(c Config) Config {
	c.VerdictEntries, c.PendingEntries, c.InnerRuleEntries = 256, 256, 256
	return c
}

func sampleReader(t testing.TB, p *Program) *SampleReader {
	t.Helper()
	r, err := p.NewSampleReader()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// run runs the program once over frame and returns its action, the output
// frame and the change of every exit counter.
func run(t testing.TB, p *Program, frame []byte) (uint32, []byte, ExitCounts) {
	t.Helper()
	before, err := p.ExitCounters()
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, len(frame)+256)
	ctx := xdpMd{DataEnd: uint32(len(frame)), IngressIfindex: loIfindex}
	ret, err := p.XDP().Run(&ebpf.RunOptions{Data: frame, DataOut: out, Context: ctx})
	if err != nil {
		t.Fatalf("run over %d bytes: %v", len(frame), err)
	}
	after, err := p.ExitCounters()
	if err != nil {
		t.Fatal(err)
	}
	var d ExitCounts
	for i := range after {
		d[i] = after[i] - before[i]
	}
	return ret, out, d
}

// onlyReason checks that exactly one counter moved, by one, and returns it.
func onlyReason(t testing.TB, d ExitCounts) ExitReason {
	t.Helper()
	var got ExitReason = ExitReason(NumExitReasons)
	for r, n := range d {
		switch {
		case n == 0:
		case n == 1 && got == ExitReason(NumExitReasons):
			got = ExitReason(r)
		default:
			t.Fatalf("exit counters moved %v, want exactly one +1", d)
		}
	}
	if got == ExitReason(NumExitReasons) {
		t.Fatalf("no exit counter moved")
	}
	return got
}

func key4(t testing.TB, spi uint32, encap uint8, sport, dport uint16) FlowKey {
	t.Helper()
	k, err := NewFlowKey(outerSrc4, outerDst4, spi, encap, sport, dport)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func key6(t testing.TB, spi uint32) FlowKey {
	t.Helper()
	k, err := NewFlowKey(outerSrc6, outerDst6, spi, EncapNone, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func inner(t testing.TB, proto uint8, src, dst netip.Addr, sport, dport uint16) InnerKey {
	t.Helper()
	k, err := NewInnerKey(proto, src, dst, sport, dport)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustVerdict(t testing.TB, p *Program, k FlowKey, v Verdict) {
	t.Helper()
	if err := p.SetVerdict(k, v); err != nil {
		t.Fatal(err)
	}
}

func mustRule(t testing.TB, p *Program, k InnerKey, a Action) {
	t.Helper()
	if err := p.SetInnerRule(k, a, 7); err != nil {
		t.Fatal(err)
	}
}

var (
	nullV     = Verdict{Kind: VerdictNull, IcvLen: 12}
	encV      = Verdict{Kind: VerdictEncrypted, IcvLen: 16, IvLen: 8}
	dropInner = func(t testing.TB, p *Program) {
		mustRule(t, p, inner(t, 17, innerSrc4, innerDst4, 1000, 53), ActionDrop)
	}
)

const (
	xdpAborted  = 0
	xdpDrop     = 1
	xdpPass     = 2
	xdpRedirect = 4
)

func TestRun(t *testing.T) {
	requireBPF(t)
	const spi = 0x1001
	nullFlow := func(t testing.TB, p *Program) { mustVerdict(t, p, key4(t, spi, EncapNone, 0, 0), nullV) }
	nullDrop := func(t testing.TB, p *Program) { nullFlow(t, p); dropInner(t, p) }
	encFlow := func(a Action) func(t testing.TB, p *Program) {
		return func(t testing.TB, p *Program) {
			v := encV
			v.ActionEncrypted = uint8(a)
			mustVerdict(t, p, key4(t, spi, EncapNone, 0, 0), v)
		}
	}
	ike := append(make([]byte, 4), []byte("IKEv2 header.................")...)
	tunnel := nullTunnel4(spi, 1000, 53)
	ipOpts := []byte{0x94, 4, 0, 0, 1, 1, 1, 0} // router alert, NOP, NOP, NOP, EOL
	maxOpts := append([]byte{0x44, 40, 5, 0}, make([]byte, 36)...)
	udpNull := cat(eth(etherIPv4), ipv4(17, outerSrc4, outerDst4,
		udp(4500, 4500, espNull(spi, 1, 0, innerUDP4(1000, 53), 4, 12)), ip4opts{}))
	v6Null := func(exts ...ext6) []byte {
		return cat(eth(etherIPv6), ipv6(50, outerSrc6, outerDst6, espNull(spi, 1, 0, innerTCP6(40000, 443), 41, 16), exts...))
	}
	v6Flow := func(t testing.TB, p *Program) {
		mustVerdict(t, p, key6(t, spi), Verdict{Kind: VerdictNull, IcvLen: 16, Mode: ModeTunnel})
		mustRule(t, p, inner(t, 6, innerSrc6, innerDst6, 40000, 443), ActionDrop)
	}
	nineExts := make([]ext6, 9)
	for i := range nineExts {
		nineExts[i] = optsExt(60, 0)
	}
	nineExts[0] = optsExt(0, 0)
	// Transport mode: the policy sees the outer addresses and the TCP ports.
	transport := cat(eth(etherIPv4), ipv4(50, outerSrc4, outerDst4, espNull(spi, 1, 8, tcp(5555, 22, []byte("ssh")), 6, 12), ip4opts{}))
	transportFlow := func(t testing.TB, p *Program) {
		mustVerdict(t, p, key4(t, spi, EncapNone, 0, 0), Verdict{Kind: VerdictNull, IcvLen: 12, IvLen: 8, Mode: ModeTransport})
		mustRule(t, p, inner(t, 6, outerSrc4, outerDst4, 5555, 22), ActionDrop)
	}
	// A frame below the Ethernet minimum is padded: the trailer must be
	// found from the IP length, not the frame length.
	small := cat(eth(etherIPv4), ipv4(50, outerSrc4, outerDst4, espNull(spi, 1, 0, udp(7, 7, nil), 17, 0), ip4opts{}))
	small = append(small, make([]byte, 60-len(small))...)
	smallFlow := func(t testing.TB, p *Program) {
		mustVerdict(t, p, key4(t, spi, EncapNone, 0, 0), Verdict{Kind: VerdictNull, Mode: ModeTransport})
		mustRule(t, p, inner(t, 17, outerSrc4, outerDst4, 7, 7), ActionDrop)
	}
	wespNull := func(flags uint8) []byte {
		esp := espNull(spi, 1, 0, innerUDP4(1000, 53), 4, 12)
		hdr := uint8(4 + 8)
		if flags&0x10 != 0 {
			hdr += 4
		}
		return cat(eth(etherIPv4), ipv4(141, outerSrc4, outerDst4, wesp(4, hdr, 12, flags, esp), ip4opts{}))
	}
	wespUDP := cat(eth(etherIPv4), ipv4(17, outerSrc4, outerDst4,
		udp(4500, 4500, cat([]byte{0, 0, 0, 2}, wesp(4, 12, 12, 0, espNull(spi, 1, 0, innerUDP4(1000, 53), 4, 12)))), ip4opts{}))

	cases := []struct {
		name   string
		cfg    Config
		setup  func(testing.TB, *Program)
		frame  []byte
		want   uint32
		reason ExitReason
		// ringFull fills a one-page sample ring first (samples of other
		// flows, nobody reading), so the sample cannot be written.
		ringFull bool
	}{
		{name: "unknown-ring-full", cfg: Config{NoRateLimit: true}, frame: tunnel, ringFull: true, want: xdpPass, reason: ExitSampleLost},
		{name: "unknown-ring-full-fail-closed", cfg: Config{FailClosed: true, NoRateLimit: true}, frame: tunnel, ringFull: true, want: xdpDrop, reason: ExitSampleLost},
		{name: "udp-dns", frame: cat(eth(etherIPv4), ipv4(17, outerSrc4, outerDst4, udp(5353, 53, []byte("q")), ip4opts{})), want: xdpPass, reason: ExitNonESP},
		{name: "arp", frame: cat(eth(0x0806), make([]byte, 28)), want: xdpPass, reason: ExitNonESP},
		{name: "ike-500", frame: cat(eth(etherIPv4), ipv4(17, outerSrc4, outerDst4, udp(500, 500, ike[4:]), ip4opts{})), want: xdpPass, reason: ExitIKE},
		{name: "ike-4500-marker", frame: cat(eth(etherIPv4), ipv4(17, outerSrc4, outerDst4, udp(4500, 4500, ike), ip4opts{})), want: xdpPass, reason: ExitIKE},
		{name: "natt-keepalive", frame: cat(eth(etherIPv4), ipv4(17, outerSrc4, outerDst4, udp(4500, 4500, []byte{0xff}), ip4opts{})), want: xdpPass, reason: ExitKeepalive},
		{name: "natt-one-byte-not-keepalive", frame: cat(eth(etherIPv4), ipv4(17, outerSrc4, outerDst4, udp(4500, 4500, []byte{0x01}), ip4opts{})), want: xdpPass, reason: ExitMalformed},
		{name: "natt-short", frame: cat(eth(etherIPv4), ipv4(17, outerSrc4, outerDst4, udp(4500, 4500, []byte{1, 2, 3, 4, 5}), ip4opts{})), want: xdpPass, reason: ExitMalformed},
		{name: "esp-spi-zero", frame: cat(eth(etherIPv4), ipv4(50, outerSrc4, outerDst4, espEncrypted(0, 1, 40), ip4opts{})), want: xdpPass, reason: ExitMalformed},
		{name: "esp-spi-zero-fail-closed", cfg: Config{FailClosed: true}, frame: cat(eth(etherIPv4), ipv4(50, outerSrc4, outerDst4, espEncrypted(0, 1, 40), ip4opts{})), want: xdpDrop, reason: ExitMalformed},
		{name: "unknown-sampled", frame: tunnel, want: xdpPass, reason: ExitPendingSampled},
		{name: "unknown-sampled-fail-closed", cfg: Config{FailClosed: true}, frame: tunnel, want: xdpDrop, reason: ExitPendingSampled},
		{name: "unknown-no-sampling", cfg: Config{DisableSampling: true}, frame: tunnel, want: xdpPass, reason: ExitPendingOverLimit},
		{name: "unknown-no-sampling-fail-closed", cfg: Config{DisableSampling: true, FailClosed: true}, frame: tunnel, want: xdpDrop, reason: ExitPendingOverLimit},
		{name: "verdict-unknown-is-sampled", setup: func(t testing.TB, p *Program) { mustVerdict(t, p, key4(t, spi, 0, 0, 0), Verdict{}) }, frame: tunnel, want: xdpPass, reason: ExitPendingSampled},
		{name: "encrypted-pass", setup: encFlow(ActionDefault), frame: tunnel, want: xdpPass, reason: ExitEncryptedPass},
		{name: "encrypted-drop-config", cfg: Config{EncryptedAction: ActionDrop}, setup: encFlow(ActionDefault), frame: tunnel, want: xdpDrop, reason: ExitEncryptedDrop},
		{name: "encrypted-count-config", cfg: Config{EncryptedAction: ActionCount}, setup: encFlow(ActionDefault), frame: tunnel, want: xdpPass, reason: ExitEncryptedCount},
		{name: "encrypted-drop-per-flow", setup: encFlow(ActionDrop), frame: tunnel, want: xdpDrop, reason: ExitEncryptedDrop},
		{name: "encrypted-pass-per-flow-over-drop", cfg: Config{EncryptedAction: ActionDrop}, setup: encFlow(ActionPass), frame: tunnel, want: xdpPass, reason: ExitEncryptedPass},
		{name: "null-no-rule", setup: nullFlow, frame: tunnel, want: xdpPass, reason: ExitNullAllow},
		{name: "null-drop-rule", setup: nullDrop, frame: tunnel, want: xdpDrop, reason: ExitNullDrop},
		{name: "null-other-port-allowed", setup: nullDrop, frame: nullTunnel4(spi, 1000, 54), want: xdpPass, reason: ExitNullAllow},
		{name: "null-count-rule", setup: func(t testing.TB, p *Program) {
			nullFlow(t, p)
			mustRule(t, p, inner(t, 17, innerSrc4, innerDst4, 1000, 53), ActionCount)
		}, frame: tunnel, want: xdpPass, reason: ExitNullCount},
		{name: "null-default-drop", cfg: Config{InnerDefault: ActionDrop}, setup: nullFlow, frame: tunnel, want: xdpDrop, reason: ExitNullDrop},
		{name: "null-allow-rule-over-default-drop", cfg: Config{InnerDefault: ActionDrop}, setup: func(t testing.TB, p *Program) {
			nullFlow(t, p)
			mustRule(t, p, inner(t, 17, innerSrc4, innerDst4, 1000, 53), ActionPass)
		}, frame: tunnel, want: xdpPass, reason: ExitNullAllow},
		{name: "null-transport-iv8", setup: transportFlow, frame: transport, want: xdpDrop, reason: ExitNullDrop},
		{name: "null-ethernet-padding", setup: smallFlow, frame: small, want: xdpDrop, reason: ExitNullDrop},
		{name: "null-dummy-packet", setup: nullFlow, frame: cat(eth(etherIPv4), ipv4(50, outerSrc4, outerDst4, espNull(spi, 1, 0, []byte("tfc"), 59, 12), ip4opts{})), want: xdpPass, reason: ExitNullAllow},
		{name: "null-icv-too-long", setup: func(t testing.TB, p *Program) {
			mustVerdict(t, p, key4(t, spi, 0, 0, 0), Verdict{Kind: VerdictNull, IcvLen: 250})
		}, frame: tunnel, want: xdpPass, reason: ExitNullUnparsed},
		{name: "null-unparsed-fail-closed", cfg: Config{FailClosed: true}, setup: func(t testing.TB, p *Program) {
			mustVerdict(t, p, key4(t, spi, 0, 0, 0), Verdict{Kind: VerdictNull, IcvLen: 16, Mode: ModeTunnel})
		}, frame: tunnel, want: xdpDrop, reason: ExitNullUnparsed},
		{name: "null-udp-4500", setup: func(t testing.TB, p *Program) {
			mustVerdict(t, p, key4(t, spi, EncapUDP, 4500, 4500), nullV)
			dropInner(t, p)
		}, frame: udpNull, want: xdpDrop, reason: ExitNullDrop},
		{name: "null-udp-4500-key-has-ports", setup: nullDrop, frame: udpNull, want: xdpPass, reason: ExitPendingSampled},
		{name: "null-vlan", setup: nullDrop, frame: cat(eth(etherIPv4, ether8021Q), tunnel[14:]), want: xdpDrop, reason: ExitNullDrop},
		{name: "null-qinq", setup: nullDrop, frame: cat(eth(etherIPv4, ether8021AD, ether8021Q), tunnel[14:]), want: xdpDrop, reason: ExitNullDrop},
		{name: "three-vlan-tags", setup: nullDrop, frame: cat(eth(etherIPv4, ether8021AD, ether8021Q, ether8021Q), tunnel[14:]), want: xdpPass, reason: ExitMalformed},
		{name: "null-ipv4-options", setup: nullDrop, frame: cat(eth(etherIPv4), ipv4(50, outerSrc4, outerDst4, espNull(spi, 1, 0, innerUDP4(1000, 53), 4, 12), ip4opts{options: ipOpts})), want: xdpDrop, reason: ExitNullDrop},
		{name: "null-ipv4-max-options", setup: nullDrop, frame: cat(eth(etherIPv4), ipv4(50, outerSrc4, outerDst4, espNull(spi, 1, 0, innerUDP4(1000, 53), 4, 12), ip4opts{options: maxOpts})), want: xdpDrop, reason: ExitNullDrop},
		{name: "ipv4-non-first-fragment", setup: nullDrop, frame: cat(eth(etherIPv4), ipv4(50, outerSrc4, outerDst4, make([]byte, 64), ip4opts{fragOff: 185})), want: xdpPass, reason: ExitFragment},
		{name: "ipv4-non-first-fragment-fail-closed", cfg: Config{FailClosed: true}, frame: cat(eth(etherIPv4), ipv4(50, outerSrc4, outerDst4, make([]byte, 64), ip4opts{fragOff: 185})), want: xdpPass, reason: ExitFragment},
		{name: "ipv4-first-fragment", setup: nullDrop, frame: cat(eth(etherIPv4), ipv4(50, outerSrc4, outerDst4, espNull(spi, 1, 0, innerUDP4(1000, 53), 4, 0)[:40], ip4opts{mf: true})), want: xdpPass, reason: ExitFragment},
		{name: "ipv4-udp-fragment-not-natt", frame: cat(eth(etherIPv4), ipv4(17, outerSrc4, outerDst4, udp(1, 2, make([]byte, 32)), ip4opts{mf: true})), want: xdpPass, reason: ExitNonESP},
		{name: "null-ipv6-tunnel", setup: v6Flow, frame: v6Null(), want: xdpDrop, reason: ExitNullDrop},
		{name: "null-ipv6-ext-headers", setup: v6Flow, frame: v6Null(optsExt(0, 0), optsExt(43, 1), optsExt(60, 3)), want: xdpDrop, reason: ExitNullDrop},
		{name: "null-ipv6-atomic-fragment", setup: v6Flow, frame: v6Null(optsExt(0, 0), fragExt(0, false)), want: xdpDrop, reason: ExitNullDrop},
		{name: "null-ipv6-inner-ext-headers", setup: v6Flow, frame: cat(eth(etherIPv6), ipv6(50, outerSrc6, outerDst6,
			espNull(spi, 1, 0, ipv6(6, innerSrc6, innerDst6, tcp(40000, 443, nil), optsExt(0, 0), optsExt(60, 2)), 41, 16))), want: xdpDrop, reason: ExitNullDrop},
		{name: "null-ipv6-inner-too-many-ext-headers", setup: v6Flow, frame: cat(eth(etherIPv6), ipv6(50, outerSrc6, outerDst6,
			espNull(spi, 1, 0, ipv6(6, innerSrc6, innerDst6, tcp(40000, 443, nil), nineExts...), 41, 16))), want: xdpPass, reason: ExitNullUnparsed},
		{name: "null-ipv6-inner-fragment-portless", setup: func(t testing.TB, p *Program) {
			v6Flow(t, p)
			mustRule(t, p, inner(t, 6, innerSrc6, innerDst6, 0, 0), ActionDrop)
		}, frame: cat(eth(etherIPv6), ipv6(50, outerSrc6, outerDst6,
			espNull(spi, 1, 0, ipv6(6, innerSrc6, innerDst6, make([]byte, 24), fragExt(3, false)), 41, 16))), want: xdpDrop, reason: ExitNullDrop},
		{name: "null-ipv4-inner-fragment-portless", setup: func(t testing.TB, p *Program) {
			nullFlow(t, p)
			mustRule(t, p, inner(t, 17, innerSrc4, innerDst4, 0, 0), ActionDrop)
		}, frame: cat(eth(etherIPv4), ipv4(50, outerSrc4, outerDst4,
			espNull(spi, 1, 0, ipv4(17, innerSrc4, innerDst4, make([]byte, 24), ip4opts{fragOff: 3}), 4, 12), ip4opts{})), want: xdpDrop, reason: ExitNullDrop},
		{name: "null-ipv6-udp-4500", setup: func(t testing.TB, p *Program) {
			k, _ := NewFlowKey(outerSrc6, outerDst6, spi, EncapUDP, 4500, 4500)
			mustVerdict(t, p, k, Verdict{Kind: VerdictNull, IcvLen: 16})
			mustRule(t, p, inner(t, 6, innerSrc6, innerDst6, 40000, 443), ActionDrop)
		}, frame: cat(eth(etherIPv6), ipv6(17, outerSrc6, outerDst6, udp(4500, 4500, espNull(spi, 1, 0, innerTCP6(40000, 443), 41, 16)))), want: xdpDrop, reason: ExitNullDrop},
		{name: "wesp-ipv6-padded", setup: func(t testing.TB, p *Program) {
			mustRule(t, p, inner(t, 6, innerSrc6, innerDst6, 40000, 443), ActionDrop)
		}, frame: cat(eth(etherIPv6), ipv6(141, outerSrc6, outerDst6, wesp(41, 16, 16, 0x10, espNull(spi, 1, 0, innerTCP6(40000, 443), 41, 16)))), want: xdpDrop, reason: ExitNullDrop},
		{name: "wesp-next-header-mismatch", frame: cat(eth(etherIPv4), ipv4(141, outerSrc4, outerDst4,
			wesp(41, 12, 12, 0, espNull(spi, 1, 0, innerUDP4(1000, 53), 4, 12)), ip4opts{})), want: xdpPass, reason: ExitWESPMismatch},
		{name: "wesp-trailer-len-not-verdict-fail-closed", cfg: Config{FailClosed: true}, setup: func(t testing.TB, p *Program) {
			mustVerdict(t, p, key4(t, spi, EncapWESP, 0, 0), Verdict{Kind: VerdictNull, IcvLen: 16})
		}, frame: wespNull(0), want: xdpDrop, reason: ExitWESPMismatch},
		{name: "ipv6-non-first-fragment", setup: v6Flow, frame: v6Null(fragExt(100, false)), want: xdpPass, reason: ExitFragment},
		{name: "ipv6-first-fragment", setup: v6Flow, frame: v6Null(fragExt(0, true)), want: xdpPass, reason: ExitFragment},
		{name: "ipv6-eight-ext-headers", setup: v6Flow, frame: v6Null(nineExts[:8]...), want: xdpDrop, reason: ExitNullDrop},
		{name: "ipv6-nine-ext-headers", setup: v6Flow, frame: v6Null(nineExts...), want: xdpPass, reason: ExitExtHdrLimit},
		{name: "ipv6-nine-ext-headers-fail-closed", cfg: Config{FailClosed: true}, setup: v6Flow, frame: v6Null(nineExts...), want: xdpDrop, reason: ExitExtHdrLimit},
		{name: "wesp-null-no-verdict", setup: dropInner, frame: wespNull(0), want: xdpDrop, reason: ExitNullDrop},
		{name: "wesp-null-padded", setup: dropInner, frame: wespNull(0x10), want: xdpDrop, reason: ExitNullDrop},
		{name: "wesp-null-allowed", frame: wespNull(0), want: xdpPass, reason: ExitNullAllow},
		{name: "wesp-encrypted", setup: dropInner, frame: wespNull(0x20), want: xdpPass, reason: ExitEncryptedPass},
		{name: "wesp-encrypted-drop", cfg: Config{EncryptedAction: ActionDrop}, frame: wespNull(0x20), want: xdpDrop, reason: ExitEncryptedDrop},
		{name: "wesp-verdict-overrides-flag", setup: func(t testing.TB, p *Program) {
			mustVerdict(t, p, key4(t, spi, EncapWESP, 0, 0), Verdict{Kind: VerdictEncrypted, ActionEncrypted: uint8(ActionDrop)})
		}, frame: wespNull(0), want: xdpDrop, reason: ExitEncryptedDrop},
		{name: "wesp-bad-version", frame: wespNull(0x40), want: xdpPass, reason: ExitMalformed},
		{name: "wesp-udp-null", setup: dropInner, frame: wespUDP, want: xdpDrop, reason: ExitNullDrop},
		{name: "bridge-non-esp", cfg: Config{Bridge: true}, setup: func(t testing.TB, p *Program) {
			if err := p.putBridgePort(loIfindex, loIfindex); err != nil {
				t.Fatal(err)
			}
		}, frame: cat(eth(etherIPv4), ipv4(17, outerSrc4, outerDst4, udp(1, 2, nil), ip4opts{})), want: xdpRedirect, reason: ExitNonESP},
		{name: "bridge-null-drop-still-drops", cfg: Config{Bridge: true}, setup: func(t testing.TB, p *Program) {
			if err := p.putBridgePort(loIfindex, loIfindex); err != nil {
				t.Fatal(err)
			}
			nullDrop(t, p)
		}, frame: tunnel, want: xdpDrop, reason: ExitNullDrop},
		{name: "bridge-null-allow-redirects", cfg: Config{Bridge: true}, setup: func(t testing.TB, p *Program) {
			if err := p.putBridgePort(loIfindex, loIfindex); err != nil {
				t.Fatal(err)
			}
			nullFlow(t, p)
		}, frame: tunnel, want: xdpRedirect, reason: ExitNullAllow},
		{name: "bridge-encrypted-redirects", cfg: Config{Bridge: true}, setup: func(t testing.TB, p *Program) {
			if err := p.putBridgePort(loIfindex, loIfindex); err != nil {
				t.Fatal(err)
			}
			encFlow(ActionDefault)(t, p)
		}, frame: tunnel, want: xdpRedirect, reason: ExitEncryptedPass},
		{name: "bridge-unknown-redirects", cfg: Config{Bridge: true}, setup: func(t testing.TB, p *Program) {
			if err := p.putBridgePort(loIfindex, loIfindex); err != nil {
				t.Fatal(err)
			}
		}, frame: tunnel, want: xdpRedirect, reason: ExitPendingSampled},
		{name: "bridge-no-port-passes", cfg: Config{Bridge: true}, frame: tunnel, want: xdpPass, reason: ExitPendingSampled},
	}
	covered := map[ExitReason]bool{ExitSampleRateLimited: true} // TestSampleRateLimit
	for _, tc := range cases {
		covered[tc.reason] = true
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			if tc.ringFull {
				cfg.SampleRingBytes = os.Getpagesize()
			}
			p := loadTest(t, smallMaps(cfg))
			sampleReader(t, p)
			if tc.ringFull {
				fillRing(t, p)
			}
			if tc.setup != nil {
				tc.setup(t, p)
			}
			ret, out, d := run(t, p, tc.frame)
			if r := onlyReason(t, d); r != tc.reason {
				t.Errorf("exit reason %v, want %v", r, tc.reason)
			}
			if ret != tc.want {
				t.Errorf("action %d, want %d", ret, tc.want)
			}
			if !bytes.Equal(out[:len(tc.frame)], tc.frame) {
				t.Errorf("program changed the frame")
			}
		})
	}
	for r := range ExitReason(NumExitReasons) {
		if !covered[r] {
			t.Errorf("no case ends in exit reason %v", r)
		}
	}
}

// fillRing writes samples of new flows until the sample ring is full. The
// frames are the smallest ESP frames, so no larger sample fits after them.
func fillRing(t *testing.T, p *Program) {
	t.Helper()
	for spi := uint32(0xf000); spi < 0xf100; spi++ {
		f := cat(eth(etherIPv4), ipv4(50, outerSrc4, outerDst4, espEncrypted(spi, 1, 0), ip4opts{}))
		if _, _, d := run(t, p, f); d[ExitSampleLost] == 1 {
			return
		}
	}
	t.Fatal("the sample ring never filled")
}
