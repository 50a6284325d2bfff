package ebpf

import "testing"

// TestFlowUnparsedCounter checks the evidence of inline revocation: the
// packets of a flow decided null that fail the null parse (exit reasons
// ExitNullUnparsed and ExitWESPMismatch) are counted in its slot, its good packets are not, and
// neither are the packets of an encrypted flow.
func TestFlowUnparsedCounter(t *testing.T) {
	pinCPU(t)
	p := loadTest(t, smallMaps(Config{}))
	n, e, w := key4(t, 0x400, EncapNone, 0, 0), key4(t, 0x401, EncapNone, 0, 0), key4(t, 0x402, EncapWESP, 0, 0)
	mustVerdict(t, p, n, nullV)
	mustVerdict(t, p, e, encV)
	mustVerdict(t, p, w, nullV)

	good := nullTunnel4(0x400, 1000, 53)
	// The pad length reaches beyond the payload.
	badPad := append([]byte(nil), good...)
	badPad[len(badPad)-12-2] = 255
	// Next header IPv4, but no IPv4 header inside.
	badInner := cat(eth(etherIPv4), ipv4(50, outerSrc4, outerDst4, espNull(0x400, 2, 0, make([]byte, 40), 4, 12), ip4opts{}))
	// Ciphertext under an encrypted verdict: not the null parse's business.
	encGarbage := cat(eth(etherIPv4), ipv4(50, outerSrc4, outerDst4, espEncrypted(0x401, 1, 100), ip4opts{}))
	// WESP announcing a header shorter than its own, and than the
	// verdict's: a WESP mismatch, which counts as unparsed.
	wespBad := cat(eth(etherIPv4), ipv4(141, outerSrc4, outerDst4, wesp(4, 4, 12, 0, espNull(0x402, 1, 0, innerUDP4(1000, 53), 4, 12)), ip4opts{}))

	for _, c := range []struct {
		frame  []byte
		reason ExitReason
	}{
		{good, ExitNullAllow}, {badPad, ExitNullUnparsed}, {good, ExitNullAllow},
		{badInner, ExitNullUnparsed}, {badInner, ExitNullUnparsed}, {good, ExitNullAllow},
		{encGarbage, ExitEncryptedPass}, {encGarbage, ExitEncryptedPass},
		{wespBad, ExitWESPMismatch},
	} {
		_, _, d := run(t, p, c.frame)
		if d[c.reason] != 1 {
			t.Fatalf("frame of %d bytes: exit counters moved %v, want %v", len(c.frame), d, c.reason)
		}
	}
	for _, c := range []struct {
		k    FlowKey
		want FlowStats
	}{
		{n, FlowStats{Packets: 6, Bytes: uint64(3*len(good) + len(badPad) + 2*len(badInner)), Unparsed: 3}},
		{e, FlowStats{Packets: 2, Bytes: uint64(2 * len(encGarbage))}},
		{w, FlowStats{Packets: 1, Bytes: uint64(len(wespBad)), Unparsed: 1}},
	} {
		got, err := p.FlowCounters(c.k)
		if err != nil {
			t.Fatal(err)
		}
		if got != c.want {
			t.Errorf("flow %#x: %+v, want %+v", c.k.Spi, got, c.want)
		}
	}
	_, snap, err := p.IdleFlows(nil)
	if err != nil {
		t.Fatal(err)
	}
	if snap[n].Unparsed != 3 || snap[w].Unparsed != 1 || snap[e].Unparsed != 0 {
		t.Fatalf("snapshot: %v", snap)
	}
	nulls, err := p.NullFlows()
	if err != nil {
		t.Fatal(err)
	}
	if len(nulls) != 2 || nulls[n] != snap[n] || nulls[w] != snap[w] {
		t.Fatalf("NullFlows: %v, want flows %v and %v of %v", nulls, n, w, snap)
	}
}
