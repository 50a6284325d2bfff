package ebpf

import (
	"encoding/binary"
	"testing"
)

// TestWESPVerdictCrossCheck checks the WESP header of flows decided null
// against their verdict (RFC 5840 section 2, as heuristics' goodNull
// checks it): TrailerLen must be the verdict's ICV length, HeaderLen the
// WESP header, its padding, the ESP header and the verdict's IV, the E
// flag clear, and in tunnel mode the next header 4, 41 or 59; and every
// WESP header's next header must be the ESP trailer's. A mismatch is
// ExitWESPMismatch with the fail mode and, for a flow with a null verdict,
// counts in its Unparsed, which inline revocation reads. Flows without a
// verdict describe themselves and are only checked against the trailer.
func TestWESPVerdictCrossCheck(t *testing.T) {
	requireBPF(t)
	in4 := innerUDP4(1000, 53)
	tcpSeg := tcp(5555, 22, []byte("ssh"))
	// ESP-NULL packets: tunnel with no IV and ICV 12; transport with IV 8
	// and ICV 16.
	tun := espNullPad(0, 0, in4, 4, 12, 2, -1)
	trTCP := espNullPad(0, 8, tcpSeg, 6, 16, 3, -1)
	trUDP := espNullPad(0, 8, udp(7, 7, nil), 17, 16, 2, -1)
	dummy := espNullPad(0, 0, []byte("tfc"), 59, 12, 1, -1)
	trInTun := espNullPad(0, 0, tcpSeg, 6, 12, 3, -1)

	tunnelV := Verdict{Kind: VerdictNull, IcvLen: 12} // mode unknown
	tunnelModeV := Verdict{Kind: VerdictNull, IcvLen: 12, Mode: ModeTunnel}
	transportV := Verdict{Kind: VerdictNull, IcvLen: 16, IvLen: 8, Mode: ModeTransport}
	const noVerdict = VerdictUnknown

	cases := []struct {
		name   string
		v      Verdict // Kind noVerdict: no entry
		udp    bool    // WESP in UDP 4500
		ipv6   bool    // outer IPv6
		wesp   []byte  // WESP header and ESP packet
		failCl bool
		reason ExitReason
	}{
		{name: "agrees", v: tunnelV, wesp: wesp(4, 12, 12, 0, tun), reason: ExitNullAllow},
		{name: "agrees-padded", v: tunnelV, wesp: wesp(4, 16, 12, 0x10, tun), reason: ExitNullAllow},
		{name: "agrees-udp", v: tunnelV, udp: true, wesp: wesp(4, 12, 12, 0, tun), reason: ExitNullAllow},
		{name: "agrees-ipv6", v: tunnelV, ipv6: true, wesp: wesp(4, 12, 12, 0, tun), reason: ExitNullAllow},
		{name: "agrees-transport-iv-8", v: transportV, wesp: wesp(6, 20, 16, 0, trTCP), reason: ExitNullAllow},
		{name: "agrees-transport-padded", v: transportV, wesp: wesp(6, 24, 16, 0x10, trTCP), reason: ExitNullAllow},
		// One transport-mode SA carries TCP and UDP alike.
		{name: "transport-other-protocol", v: transportV, wesp: wesp(17, 20, 16, 0, trUDP), reason: ExitNullAllow},
		{name: "tunnel-mode-dummy", v: tunnelModeV, wesp: wesp(59, 12, 12, 0, dummy), reason: ExitNullAllow},
		{name: "tunnel-mode-ipv4", v: tunnelModeV, wesp: wesp(4, 12, 12, 0, tun), reason: ExitNullAllow},

		// TrailerLen against the verdict's ICV (the ESP packet has the
		// verdict's 12 bytes; WESP claims otherwise).
		{name: "trailer-len-longer", v: tunnelV, wesp: wesp(4, 12, 16, 0, tun), reason: ExitWESPMismatch},
		{name: "trailer-len-shorter", v: tunnelV, wesp: wesp(4, 12, 8, 0, tun), reason: ExitWESPMismatch},
		{name: "trailer-len-zero", v: tunnelV, wesp: wesp(4, 12, 0, 0, tun), reason: ExitWESPMismatch},
		{name: "trailer-len-ipv6", v: tunnelV, ipv6: true, wesp: wesp(4, 12, 16, 0, tun), reason: ExitWESPMismatch},
		{name: "trailer-len-udp", v: tunnelV, udp: true, wesp: wesp(4, 12, 16, 0, tun), reason: ExitWESPMismatch},
		// HeaderLen against the verdict's IV.
		{name: "header-len-implies-iv-4", v: tunnelV, wesp: wesp(4, 16, 12, 0, tun), reason: ExitWESPMismatch},
		{name: "header-len-short-of-iv", v: transportV, wesp: wesp(6, 12, 16, 0, trTCP), reason: ExitWESPMismatch},
		{name: "header-len-past-iv", v: transportV, wesp: wesp(6, 28, 16, 0, trTCP), reason: ExitWESPMismatch},
		{name: "header-len-ignores-padding", v: tunnelV, wesp: wesp(4, 12, 12, 0x10, tun), reason: ExitWESPMismatch},
		{name: "header-len-below-own-header", v: tunnelV, wesp: wesp(4, 4, 12, 0, tun), reason: ExitWESPMismatch},
		// E flag on a flow decided null.
		{name: "encrypted-flag", v: tunnelV, wesp: wesp(4, 12, 12, 0x20, tun), reason: ExitWESPMismatch},
		// Next header: against the trailer, and against tunnel mode.
		{name: "next-header-not-trailer", v: tunnelV, wesp: wesp(41, 12, 12, 0, tun), reason: ExitWESPMismatch},
		{name: "next-header-not-trailer-transport", v: transportV, wesp: wesp(17, 20, 16, 0, trTCP), reason: ExitWESPMismatch},
		{name: "tunnel-mode-transport-packet", v: tunnelModeV, wesp: wesp(6, 12, 12, 0, trInTun), reason: ExitWESPMismatch},
		{name: "mismatch-fail-closed", v: tunnelV, wesp: wesp(4, 12, 16, 0, tun), failCl: true, reason: ExitWESPMismatch},

		// Without a verdict WESP's own lengths are used.
		{name: "no-verdict-own-lengths", v: Verdict{Kind: noVerdict}, wesp: wesp(6, 20, 16, 0, trTCP), reason: ExitNullAllow},
		{name: "no-verdict-next-header-not-trailer", v: Verdict{Kind: noVerdict}, wesp: wesp(17, 20, 16, 0, trTCP), reason: ExitWESPMismatch},
		{name: "no-verdict-encrypted", v: Verdict{Kind: noVerdict}, wesp: wesp(6, 20, 16, 0x20, trTCP), reason: ExitEncryptedPass},
		// An encrypted verdict is not opened: nothing to compare.
		{name: "encrypted-verdict", v: Verdict{Kind: VerdictEncrypted}, wesp: wesp(4, 12, 16, 0, tun), reason: ExitEncryptedPass},
	}
	for _, failClosed := range []bool{false, true} {
		p := loadTest(t, smallMaps(Config{FailClosed: failClosed}))
		for i, c := range cases {
			if c.failCl != failClosed {
				continue
			}
			t.Run(c.name, func(t *testing.T) {
				spi := uint32(0x6000 + i)
				w := append([]byte(nil), c.wesp...)
				skip := 4
				if w[3]&0x10 != 0 {
					skip = 8
				}
				binary.BigEndian.PutUint32(w[skip:], spi)
				var frame []byte
				var k FlowKey
				var err error
				switch {
				case c.ipv6:
					frame = cat(eth(etherIPv6), ipv6(141, outerSrc6, outerDst6, w))
					k, err = NewFlowKey(outerSrc6, outerDst6, spi, EncapWESP, 0, 0)
				case c.udp:
					frame = cat(eth(etherIPv4), ipv4(17, outerSrc4, outerDst4, udp(4500, 4500, cat([]byte{0, 0, 0, 2}, w)), ip4opts{}))
					k, err = NewFlowKey(outerSrc4, outerDst4, spi, EncapWESPUDP, 4500, 4500)
				default:
					frame = cat(eth(etherIPv4), ipv4(141, outerSrc4, outerDst4, w, ip4opts{}))
					k, err = NewFlowKey(outerSrc4, outerDst4, spi, EncapWESP, 0, 0)
				}
				if err != nil {
					t.Fatal(err)
				}
				if c.v.Kind != noVerdict {
					mustVerdict(t, p, k, c.v)
				}
				ret, _, d := run(t, p, frame)
				if r := onlyReason(t, d); r != c.reason {
					t.Errorf("exit reason %v, want %v", r, c.reason)
				}
				want := uint32(xdpPass)
				if c.failCl {
					want = xdpDrop
				}
				if ret != want {
					t.Errorf("action %d, want %d", ret, want)
				}
				if c.v.Kind == noVerdict {
					return
				}
				st, err := p.FlowCounters(k)
				if err != nil {
					t.Fatal(err)
				}
				wantSt := FlowStats{Packets: 1, Bytes: uint64(len(frame))}
				if c.reason == ExitWESPMismatch && c.v.Kind == VerdictNull {
					wantSt.Unparsed = 1
				}
				if st != wantSt {
					t.Errorf("flow counters %+v, want %+v", st, wantSt)
				}
			})
		}
	}
}
