package ebpf

import (
	"encoding/binary"
	"fmt"
	"testing"
)

// espNullPad returns an ESP-NULL packet like espNull, with exactly padLen
// bytes of RFC 4303 default padding (1, 2, 3, …) before the trailer. A
// corrupt index in [0, padLen) flips the top bit of that pad byte (0-based
// from the first pad byte); -1 leaves the padding intact.
func espNullPad(spi uint32, ivLen int, payload []byte, nh uint8, icvLen, padLen, corrupt int) []byte {
	pad := defaultPad(padLen)
	if corrupt >= 0 && corrupt < padLen {
		pad[corrupt] ^= 0x80
	}
	return espNullPadWith(spi, ivLen, payload, nh, icvLen, pad)
}

// defaultPad returns RFC 4303's default padding of n bytes: 1, 2, 3, …, n.
func defaultPad(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i + 1)
	}
	return b
}

// espNullPadWith returns an ESP-NULL packet with the given pad bytes and a
// pad length byte of len(pad).
func espNullPadWith(spi uint32, ivLen int, payload []byte, nh uint8, icvLen int, pad []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, spi)
	b = binary.BigEndian.AppendUint32(b, 1)
	b = append(b, make([]byte, ivLen)...)
	b = append(b, payload...)
	b = append(b, pad...)
	b = append(b, byte(len(pad)), nh)
	for i := range icvLen {
		b = append(b, byte(0xc0+i))
	}
	return b
}

// espPadOverrun returns an ESP-NULL dummy packet (next header 59, ICV 12)
// without payload whose pad length byte claims n+1 pad bytes where only n
// fit after the IV: the n+1 bytes before the trailer are 1, 2, …, n+1, the
// first of them the last byte of the IV, or with ivLen 0 the sequence
// number's (1).
func espPadOverrun(ivLen, n int) []byte {
	b := binary.BigEndian.AppendUint32(nil, 0)
	b = binary.BigEndian.AppendUint32(b, 1)
	b = append(b, make([]byte, ivLen)...)
	b[len(b)-1] = 1
	for i := 2; i <= n+1; i++ {
		b = append(b, byte(i))
	}
	b = append(b, byte(n+1), 59)
	for i := range 12 {
		b = append(b, byte(0xc0+i))
	}
	return b
}

// TestNullPadding checks the fast path's parse of decided null flows
// against userspace's (heuristics' readNull): RFC 4303 default padding in
// every pad byte (read in windows of ESPY_PAD_CHECK, 16, bytes back from
// the trailer), and in transport mode a next header from RFC 5879's set
// with a payload long enough for it. A failure
// is ExitNullUnparsed and counts in the flow's Unparsed; a good packet
// moves neither.
func TestNullPadding(t *testing.T) {
	requireBPF(t)
	const padWindow = 16                                                                // ESPY_PAD_CHECK in espy.c
	tunnelV := Verdict{Kind: VerdictNull, IcvLen: 12}                                   // mode unknown: next header 4 means tunnel
	transportV := Verdict{Kind: VerdictNull, IcvLen: 16, IvLen: 8, Mode: ModeTransport} // the policy sees outer addresses
	in4 := innerUDP4(1000, 53)
	tcpSeg := tcp(5555, 22, []byte("ssh"))
	esp4 := func(esp []byte) []byte {
		return cat(eth(etherIPv4), ipv4(50, outerSrc4, outerDst4, esp, ip4opts{}))
	}
	tun := func(pad, corrupt int) []byte { return esp4(espNullPad(0, 0, in4, 4, 12, pad, corrupt)) }
	tr := func(payload []byte, nh uint8, pad, corrupt int) []byte {
		return esp4(espNullPad(0, 8, payload, nh, 16, pad, corrupt))
	}

	cases := []struct {
		name    string
		v       Verdict
		frame   []byte // SPI filled in per case
		failCl  bool   // run under FailClosed
		want    uint32
		reason  ExitReason
		unparse bool
	}{
		{name: "tunnel-pad-0", v: tunnelV, frame: tun(0, -1), want: xdpPass, reason: ExitNullAllow},
		{name: "tunnel-pad-1", v: tunnelV, frame: tun(1, -1), want: xdpPass, reason: ExitNullAllow},
		{name: "tunnel-pad-7", v: tunnelV, frame: tun(7, -1), want: xdpPass, reason: ExitNullAllow},
		{name: "tunnel-pad-8", v: tunnelV, frame: tun(8, -1), want: xdpPass, reason: ExitNullAllow},
		{name: "tunnel-pad-9", v: tunnelV, frame: tun(9, -1), want: xdpPass, reason: ExitNullAllow},
		{name: "tunnel-pad-15", v: tunnelV, frame: tun(15, -1), want: xdpPass, reason: ExitNullAllow},
		{name: "tunnel-pad-16", v: tunnelV, frame: tun(16, -1), want: xdpPass, reason: ExitNullAllow},
		{name: "tunnel-pad-17", v: tunnelV, frame: tun(17, -1), want: xdpPass, reason: ExitNullAllow},
		{name: "tunnel-pad-31", v: tunnelV, frame: tun(31, -1), want: xdpPass, reason: ExitNullAllow},
		{name: "tunnel-pad-32", v: tunnelV, frame: tun(32, -1), want: xdpPass, reason: ExitNullAllow},
		{name: "tunnel-pad-40", v: tunnelV, frame: tun(40, -1), want: xdpPass, reason: ExitNullAllow},
		{name: "tunnel-pad-200", v: tunnelV, frame: tun(200, -1), want: xdpPass, reason: ExitNullAllow},
		{name: "tunnel-pad-255", v: tunnelV, frame: tun(255, -1), want: xdpPass, reason: ExitNullAllow},
		{name: "pad-1-wrong", v: tunnelV, frame: tun(1, 0), want: xdpPass, reason: ExitNullUnparsed, unparse: true},
		{name: "pad-7-first-wrong", v: tunnelV, frame: tun(7, 0), want: xdpPass, reason: ExitNullUnparsed, unparse: true},
		{name: "pad-7-middle-wrong", v: tunnelV, frame: tun(7, 3), want: xdpPass, reason: ExitNullUnparsed, unparse: true},
		{name: "pad-7-last-wrong", v: tunnelV, frame: tun(7, 6), want: xdpPass, reason: ExitNullUnparsed, unparse: true},
		{name: "pad-9-in-first-word", v: tunnelV, frame: tun(9, 0), want: xdpPass, reason: ExitNullUnparsed, unparse: true},
		{name: "pad-15-first-wrong", v: tunnelV, frame: tun(15, 0), want: xdpPass, reason: ExitNullUnparsed, unparse: true},
		{name: "pad-16-first-wrong", v: tunnelV, frame: tun(16, 0), want: xdpPass, reason: ExitNullUnparsed, unparse: true},
		{name: "pad-17-first-wrong", v: tunnelV, frame: tun(17, 0), want: xdpPass, reason: ExitNullUnparsed, unparse: true},
		{name: "pad-40-window-start-wrong", v: tunnelV, frame: tun(40, 40-padWindow), want: xdpPass, reason: ExitNullUnparsed, unparse: true},
		{name: "pad-40-before-window-wrong", v: tunnelV, frame: tun(40, 40-padWindow-1), want: xdpPass, reason: ExitNullUnparsed, unparse: true},
		{name: "pad-255-first-wrong", v: tunnelV, frame: tun(255, 0), want: xdpPass, reason: ExitNullUnparsed, unparse: true},
		// Every byte one too high: right relative to each other, wrong in value.
		{name: "pad-200-shifted", v: tunnelV, frame: esp4(espNullPadWith(0, 0, in4, 4, 12, defaultPad(201)[1:])), want: xdpPass, reason: ExitNullUnparsed, unparse: true},
		// Each window right on its own but restarting at 1: only the last
		// 16 bytes are where RFC 4303 puts them.
		{name: "pad-32-restarts", v: tunnelV, frame: esp4(espNullPadWith(0, 0, in4, 4, 12, append(defaultPad(16), defaultPad(16)...))), want: xdpPass, reason: ExitNullUnparsed, unparse: true},
		// The pad fills the payload exactly: good for a dummy packet, no
		// inner header for a tunnel-mode one.
		{name: "pad-fills-payload-dummy", v: tunnelV, frame: esp4(espNullPadWith(0, 0, nil, 59, 12, defaultPad(255))), want: xdpPass, reason: ExitNullAllow},
		{name: "pad-fills-payload-tunnel", v: tunnelV, frame: esp4(espNullPadWith(0, 0, nil, 4, 12, defaultPad(40))), want: xdpPass, reason: ExitNullUnparsed, unparse: true},
		// The pad length reaches one byte into the IV: outside the payload
		// even though the byte there is the right one.
		{name: "pad-into-iv", v: Verdict{Kind: VerdictNull, IcvLen: 12, IvLen: 8, Mode: ModeTransport}, frame: esp4(espPadOverrun(8, 200)), want: xdpPass, reason: ExitNullUnparsed, unparse: true},
		// The pad length reaches into the ESP header.
		{name: "pad-into-esp-header", v: tunnelV, frame: esp4(espPadOverrun(0, 3)), want: xdpPass, reason: ExitNullUnparsed, unparse: true},
		// The verdict's ICV is longer than the packet: no trailer at all.
		{name: "icv-beyond-packet", v: Verdict{Kind: VerdictNull, IcvLen: 255}, frame: tun(200, -1), want: xdpPass, reason: ExitNullUnparsed, unparse: true},
		{name: "pad-wrong-fail-closed", v: tunnelV, frame: tun(3, 1), failCl: true, want: xdpDrop, reason: ExitNullUnparsed, unparse: true},
		{name: "dummy-packet-pad-wrong", v: tunnelV, frame: esp4(espNullPad(0, 0, []byte("tfc"), 59, 12, 3, 2)), want: xdpPass, reason: ExitNullUnparsed, unparse: true},
		{name: "dummy-packet-pad-good", v: tunnelV, frame: esp4(espNullPad(0, 0, []byte("tfc"), 59, 12, 3, -1)), want: xdpPass, reason: ExitNullAllow},

		{name: "transport-tcp", v: transportV, frame: tr(tcpSeg, 6, 2, -1), want: xdpPass, reason: ExitNullAllow},
		{name: "transport-tcp-pad-wrong", v: transportV, frame: tr(tcpSeg, 6, 2, 1), want: xdpPass, reason: ExitNullUnparsed, unparse: true},
		{name: "transport-udp", v: transportV, frame: tr(udp(7, 7, nil), 17, 2, -1), want: xdpPass, reason: ExitNullAllow},
		{name: "transport-icmp", v: transportV, frame: tr([]byte{8, 0, 0, 0, 0, 1, 0, 1}, 1, 2, -1), want: xdpPass, reason: ExitNullAllow},
		{name: "transport-sctp", v: transportV, frame: tr(make([]byte, 12), 132, 2, -1), want: xdpPass, reason: ExitNullAllow},
		{name: "transport-gre", v: transportV, frame: tr(make([]byte, 4), 47, 2, -1), want: xdpPass, reason: ExitNullAllow},
		{name: "transport-ipv4-as-transport", v: transportV, frame: tr(in4, 4, 2, -1), want: xdpPass, reason: ExitNullAllow},
		{name: "transport-unknown-nh-253", v: transportV, frame: tr(make([]byte, 40), 253, 2, -1), want: xdpPass, reason: ExitNullUnparsed, unparse: true},
		{name: "transport-unknown-nh-0", v: transportV, frame: tr(make([]byte, 40), 0, 2, -1), want: xdpPass, reason: ExitNullUnparsed, unparse: true},
		{name: "transport-udplite-not-in-set", v: transportV, frame: tr(udp(7, 7, nil), 136, 2, -1), want: xdpPass, reason: ExitNullUnparsed, unparse: true},
		{name: "transport-dccp-not-in-set", v: transportV, frame: tr(make([]byte, 16), 33, 2, -1), want: xdpPass, reason: ExitNullUnparsed, unparse: true},
		{name: "transport-tcp-too-short", v: transportV, frame: tr(tcpSeg[:19], 6, 3, -1), want: xdpPass, reason: ExitNullUnparsed, unparse: true},
		{name: "transport-udp-too-short", v: transportV, frame: tr(udp(7, 7, nil)[:7], 17, 3, -1), want: xdpPass, reason: ExitNullUnparsed, unparse: true},
		{name: "transport-ipv6-too-short", v: transportV, frame: tr(make([]byte, 39), 41, 3, -1), want: xdpPass, reason: ExitNullUnparsed, unparse: true},
		{name: "transport-unknown-nh-fail-closed", v: transportV, frame: tr(make([]byte, 40), 253, 2, -1), failCl: true, want: xdpDrop, reason: ExitNullUnparsed, unparse: true},
		// Mode unknown and a next header other than 4 or 41: transport.
		{name: "mode-unknown-unknown-nh", v: Verdict{Kind: VerdictNull, IcvLen: 12}, frame: esp4(espNullPad(0, 0, make([]byte, 40), 99, 12, 2, -1)), want: xdpPass, reason: ExitNullUnparsed, unparse: true},
		{name: "mode-unknown-tcp", v: Verdict{Kind: VerdictNull, IcvLen: 12}, frame: esp4(espNullPad(0, 0, tcpSeg, 6, 12, 1, -1)), want: xdpPass, reason: ExitNullAllow},
	}
	for _, failClosed := range []bool{false, true} {
		p := loadTest(t, smallMaps(Config{FailClosed: failClosed}))
		for i, c := range cases {
			if c.failCl != failClosed {
				continue
			}
			t.Run(c.name, func(t *testing.T) {
				spi := uint32(0x5000 + i)
				k := key4(t, spi, EncapNone, 0, 0)
				mustVerdict(t, p, k, c.v)
				frame := append([]byte(nil), c.frame...)
				binary.BigEndian.PutUint32(frame[14+20:], spi)
				ret, _, d := run(t, p, frame)
				if r := onlyReason(t, d); r != c.reason {
					t.Errorf("exit reason %v, want %v", r, c.reason)
				}
				if ret != c.want {
					t.Errorf("action %d, want %d", ret, c.want)
				}
				st, err := p.FlowCounters(k)
				if err != nil {
					t.Fatal(err)
				}
				want := FlowStats{Packets: 1, Bytes: uint64(len(frame))}
				if c.unparse {
					want.Unparsed = 1
				}
				if st != want {
					t.Errorf("flow counters %+v, want %+v", st, want)
				}
			})
		}
	}
}

// TestNullPaddingEveryByte corrupts every pad byte of pads that span
// several ESPY_PAD_CHECK windows (and of short pads far into the frame),
// one at a time: each is ExitNullUnparsed
// and counted in the flow's Unparsed, the intact pad is not. At the window
// boundaries it also writes the value the neighbouring window expects
// there, which a check that read a window one off would take for right.
func TestNullPaddingEveryByte(t *testing.T) {
	requireBPF(t)
	const spi = 0x5200
	p := loadTest(t, smallMaps(Config{}))
	k := key4(t, spi, EncapNone, 0, 0)
	mustVerdict(t, p, k, nullV)
	// The program checks the windows of a trailer less than 256 bytes
	// into the frame one by one and those of a later trailer with one
	// bounds check: short pads are tried both ways.
	short := innerUDP4(1000, 53)
	long := ipv4(17, innerSrc4, innerDst4, udp(1000, 53, make([]byte, 300)), ip4opts{})
	var in []byte
	frame := func(pad []byte) []byte {
		return cat(eth(etherIPv4), ipv4(50, outerSrc4, outerDst4, espNullPadWith(spi, 0, in, 4, 12, pad), ip4opts{}))
	}
	var want FlowStats
	check := func(name string, f []byte, reason ExitReason) {
		t.Helper()
		ret, _, d := run(t, p, f)
		if r := onlyReason(t, d); r != reason || ret != xdpPass {
			t.Errorf("%s: exit reason %v, action %d, want %v, pass", name, r, ret, reason)
		}
		want.Packets++
		want.Bytes += uint64(len(f))
		if reason == ExitNullUnparsed {
			want.Unparsed++
		}
	}
	for _, c := range []struct {
		n     int
		inner []byte
	}{{17, short}, {31, short}, {32, short}, {200, short}, {255, short}, {1, long}, {17, long}, {32, long}} {
		n := c.n
		in = c.inner
		check(fmt.Sprintf("pad %d intact", n), frame(defaultPad(n)), ExitNullAllow)
		for i := range n {
			pad := defaultPad(n)
			pad[i] ^= 0x80
			check(fmt.Sprintf("pad %d, byte %d flipped", n, i), frame(pad), ExitNullUnparsed)
			// Windows end at the trailer: byte i is the first or last
			// of its window when n-i is a multiple of 16, or one more.
			if (n-i)%16 == 0 || (n-i)%16 == 1 {
				pad[i] = byte(i + 1 + 16)
				check(fmt.Sprintf("pad %d, byte %d from the next window", n, i), frame(pad), ExitNullUnparsed)
				pad[i] = byte(i + 1 - 16)
				check(fmt.Sprintf("pad %d, byte %d from the previous window", n, i), frame(pad), ExitNullUnparsed)
			}
		}
	}
	st, err := p.FlowCounters(k)
	if err != nil {
		t.Fatal(err)
	}
	if st != want {
		t.Errorf("flow counters %+v, want %+v", st, want)
	}
}

// TestNullPaddingMultiBuffer checks frames larger than one buffer: the
// program is not frags-aware and reads the trailer with direct packet
// access, so it sees only the first buffer, and a packet whose trailer
// (and pad) lies in a later fragment must end as ExitMalformed (its IP
// length runs past the linear data), never be decided on a partly read
// pad. BPF_PROG_TEST_RUN puts what does not fit one page into fragments.
// The largest single-buffer frame has its 255-byte pad checked whole.
func TestNullPaddingMultiBuffer(t *testing.T) {
	requireBPF(t)
	const spi = 0x5300
	p := loadTest(t, smallMaps(Config{}))
	mustVerdict(t, p, key4(t, spi, EncapNone, 0, 0), nullV)
	frame := func(size, corrupt int) []byte {
		in := innerUDP4(1000, 53)
		body := make([]byte, size-14-20-8-len(in)-255-2-12)
		pad := defaultPad(255)
		if corrupt >= 0 {
			pad[corrupt] ^= 0x80
		}
		return cat(eth(etherIPv4), ipv4(50, outerSrc4, outerDst4, espNullPadWith(spi, 0, cat(in, body), 4, 12, pad), ip4opts{}))
	}
	largest := 0
	for size := 3000; size <= 4200; size += 4 {
		_, _, d := run(t, p, frame(size, 254))
		switch r := onlyReason(t, d); {
		case r == ExitNullUnparsed && largest == size-4:
			largest = size
		case r == ExitNullUnparsed && size == 3000:
			largest = size
		case r != ExitMalformed:
			t.Fatalf("%d-byte frame: %v, want null-unparsed up to one buffer and malformed beyond", size, r)
		}
	}
	if largest == 0 || largest == 4200 {
		t.Fatalf("largest single-buffer frame %d: no multi-buffer frame tested", largest)
	}
	t.Logf("largest single-buffer frame: %d bytes", largest)
	for _, c := range []struct {
		size, corrupt int
		reason        ExitReason
	}{
		{largest, -1, ExitNullAllow}, {largest, 0, ExitNullUnparsed}, {largest, 253, ExitNullUnparsed},
		{largest + 4, -1, ExitMalformed}, {9000, -1, ExitMalformed}, {9000, 0, ExitMalformed},
	} {
		if _, _, d := run(t, p, frame(c.size, c.corrupt)); onlyReason(t, d) != c.reason {
			t.Errorf("%d-byte frame, pad byte %d corrupt: %v, want %v", c.size, c.corrupt, d, c.reason)
		}
	}
}

// TestNullPaddingEncapsulations checks that the padding check applies to
// every way a null flow reaches null_flow: ESP in UDP, WESP and IPv6.
func TestNullPaddingEncapsulations(t *testing.T) {
	requireBPF(t)
	const spi = 0x5100
	p := loadTest(t, smallMaps(Config{}))
	udpKey := key4(t, spi, EncapUDP, 4500, 4500)
	wespKey := key4(t, spi, EncapWESP, 0, 0)
	v6Key := key6(t, spi)
	mustVerdict(t, p, udpKey, nullV)
	mustVerdict(t, p, wespKey, nullV)
	mustVerdict(t, p, v6Key, Verdict{Kind: VerdictNull, IcvLen: 16, Mode: ModeTunnel})

	udpFrame := func(corrupt int) []byte {
		return cat(eth(etherIPv4), ipv4(17, outerSrc4, outerDst4, udp(4500, 4500, espNullPad(spi, 0, innerUDP4(1000, 53), 4, 12, 6, corrupt)), ip4opts{}))
	}
	wespFrame := func(corrupt int) []byte {
		return cat(eth(etherIPv4), ipv4(141, outerSrc4, outerDst4, wesp(4, 12, 12, 0, espNullPad(spi, 0, innerUDP4(1000, 53), 4, 12, 6, corrupt)), ip4opts{}))
	}
	v6Frame := func(corrupt int) []byte {
		return cat(eth(etherIPv6), ipv6(50, outerSrc6, outerDst6, espNullPad(spi, 0, innerTCP6(40000, 443), 41, 16, 6, corrupt)))
	}
	for _, c := range []struct {
		name  string
		k     FlowKey
		frame func(int) []byte
	}{
		{"udp-4500", udpKey, udpFrame},
		{"wesp", wespKey, wespFrame},
		{"ipv6", v6Key, v6Frame},
	} {
		t.Run(c.name, func(t *testing.T) {
			good, bad := c.frame(-1), c.frame(5)
			for _, f := range []struct {
				frame  []byte
				reason ExitReason
			}{{good, ExitNullAllow}, {bad, ExitNullUnparsed}, {good, ExitNullAllow}} {
				if _, _, d := run(t, p, f.frame); onlyReason(t, d) != f.reason {
					t.Fatalf("exit counters moved %v, want %v", d, f.reason)
				}
			}
			st, err := p.FlowCounters(c.k)
			if err != nil {
				t.Fatal(err)
			}
			if want := (FlowStats{Packets: 3, Bytes: uint64(2*len(good) + len(bad)), Unparsed: 1}); st != want {
				t.Errorf("flow counters %+v, want %+v", st, want)
			}
		})
	}
}
