package heuristics_test

import (
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/espy-dpi/espy/espsynth"
	"github.com/espy-dpi/espy/heuristics"
	"github.com/espy-dpi/espy/packet"
)

var (
	fzSrc4 = netip.MustParseAddr("192.0.2.10")
	fzDst4 = netip.MustParseAddr("203.0.113.20")
	fzSrc6 = netip.MustParseAddr("2001:db8:a::10")
	fzDst6 = netip.MustParseAddr("2001:db8:b::20")
)

// fzRawIP builds an outer IP datagram of protocol proto around payload, so the
// Packet under test comes out of the real decoder with the IPHeader, address
// and WESP invariants the engine relies on.
func fzRawIP(v6 bool, proto uint8, payload []byte) ([]byte, packet.LinkType) {
	if v6 {
		b := make([]byte, 40, 40+len(payload))
		b[0] = 0x60
		binary.BigEndian.PutUint16(b[4:], uint16(len(payload)))
		b[6], b[7] = proto, 64
		s, d := fzSrc6.As16(), fzDst6.As16()
		copy(b[8:], s[:])
		copy(b[24:], d[:])
		return append(b, payload...), packet.LinkTypeIPv6
	}
	b := make([]byte, 20, 20+len(payload))
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:], uint16(20+len(payload)))
	b[8], b[9] = 64, proto
	s, d := fzSrc4.As4(), fzDst4.As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	return append(b, payload...), packet.LinkTypeIPv4
}

// fzESPPacket decodes an outer datagram carrying esp (proto 50) or a WESP
// packet (proto 141) into p. It reports false when the decoder rejects it.
func fzESPPacket(v6 bool, proto uint8, esp []byte, p *packet.Packet) bool {
	var d packet.Decoder
	frame, lt := fzRawIP(v6, proto, esp)
	return d.Decode(lt, frame, p) == nil && (p.Kind == packet.KindESP || p.Kind == packet.KindWESP)
}

// FuzzObserve feeds arbitrary ESP payloads (or WESP packets) through the
// whole per-flow life: Observe until final, then Watch and Decapsulate under
// the engine's verdict and under every candidate, and Remember. Nothing may
// panic, and what comes back must be consistent.
func FuzzObserve(f *testing.F) {
	f.Add(uint8(0), []byte("\x00\x00\x10\x00\x00\x00\x00\x01random-bytes-here-and-there\x01\x02\x02\x06"))
	f.Add(uint8(1), make([]byte, 64))
	f.Add(uint8(2), append([]byte{6, 12, 12, 0}, make([]byte, 40)...))
	for _, p := range fzSynthSeeds(f) {
		f.Add(uint8(0), p)
	}
	f.Fuzz(func(t *testing.T, mode uint8, esp []byte) {
		v6 := mode&1 != 0
		proto := uint8(packet.ProtoESP)
		if mode&2 != 0 {
			proto = packet.ProtoWESP
		}
		var p packet.Packet
		if !fzESPPacket(v6, proto, esp, &p) {
			if proto == packet.ProtoESP && len(esp) >= 8 {
				t.Fatalf("decoder rejected %d ESP bytes", len(esp))
			}
			return
		}
		e := heuristics.New(heuristics.Config{RekeyEntries: 64})
		var st heuristics.FlowState
		var v heuristics.Verdict
		final := false
		seq := p.Seq()
		for i := 0; i < 20 && !final; i++ {
			binary.BigEndian.PutUint32(p.ESP[4:], seq+uint32(i)) // a flow of this packet
			v, final = e.Observe(&st, &p)
			fzCheckVerdict(t, &v)
		}
		if !final {
			t.Fatalf("not final after 20 packets: %+v", v)
		}
		var in heuristics.Inner
		verdicts := []heuristics.Verdict{v}
		for _, iv := range []uint8{0, 8, 16, 255} {
			for _, icv := range []uint8{0, 8, 12, 16, 20, 24, 32, 255} {
				verdicts = append(verdicts, heuristics.Verdict{Class: heuristics.Null, Source: heuristics.SourceHeuristic, IVLen: iv, ICVLen: icv})
			}
		}
		for i := range verdicts {
			w := &verdicts[i]
			if heuristics.Decapsulate(w, &p, &in) {
				fzCheckInner(t, &p, w, &in)
			}
			e.Remember(w, &p)
			var m heuristics.Monitor
			now := int64(1_700_000_000) * 1e9
			for j := 0; j < 40; j++ {
				binary.BigEndian.PutUint32(p.ESP[4:], seq+uint32(j*37))
				r := e.Watch(&m, w, &p, now+int64(j)*1e7)
				if r > heuristics.SPIReuse {
					t.Fatalf("Watch returned %v", r)
				}
			}
		}
	})
}

func fzCheckVerdict(t *testing.T, v *heuristics.Verdict) {
	t.Helper()
	if v.Class > heuristics.Encrypted || v.Mode > heuristics.ModeTransport || v.Source > heuristics.SourceKnown {
		t.Fatalf("verdict out of range: %+v", v)
	}
	if v.Class == heuristics.Null {
		if v.IVLen != 0 && v.IVLen != 8 && v.Source != heuristics.SourceWESP {
			t.Fatalf("null verdict with IV length %d: %+v", v.IVLen, v)
		}
		switch v.ICVLen {
		case 0, 8, 12, 16, 20, 24, 32:
		default:
			if v.Source != heuristics.SourceWESP {
				t.Fatalf("null verdict with ICV length %d: %+v", v.ICVLen, v)
			}
		}
	}
}

func fzCheckInner(t *testing.T, p *packet.Packet, v *heuristics.Verdict, in *heuristics.Inner) {
	t.Helper()
	if len(in.Datagram) == 0 && in.NextHeader != 59 {
		// minInner is 0 for some protocols: an empty datagram is allowed.
		return
	}
	if len(in.Datagram) > 0 {
		start := -1
		for off := range p.ESP {
			if &p.ESP[off] == &in.Datagram[0] {
				start = off
				break
			}
		}
		if start < 8+int(v.IVLen) || start+len(in.Datagram) > len(p.ESP)-int(v.ICVLen)-2 {
			t.Fatalf("Datagram [%d:+%d] outside the payload of %d ESP bytes (iv %d icv %d)", start, len(in.Datagram), len(p.ESP), v.IVLen, v.ICVLen)
		}
	}
	if !in.Src.IsValid() || !in.Dst.IsValid() {
		t.Fatalf("inner addresses %v %v", in.Src, in.Dst)
	}
}

// fzSynthSeeds are the ESP payloads of a few real espsynth flows.
func fzSynthSeeds(tb testing.TB) [][]byte {
	var out [][]byte
	for _, fl := range []espsynth.Flow{
		{Cipher: espsynth.CipherNULL, Auth: espsynth.AuthHMACSHA256, Mode: espsynth.Tunnel, Traffic: espsynth.TrafficHTTP, Packets: 2, OneWay: true},
		{Cipher: espsynth.CipherNullAuthAESGMAC, Traffic: espsynth.TrafficDNS, Packets: 2, OneWay: true},
		{Cipher: espsynth.CipherNULL, Auth: espsynth.AuthHMACSHA1, Outer: espsynth.IPv6, Traffic: espsynth.TrafficICMP, Packets: 2, OneWay: true},
		{Cipher: espsynth.CipherNULL, Auth: espsynth.AuthHMACSHA512, Traffic: espsynth.TrafficSCTP, Packets: 2, OneWay: true},
		{Cipher: espsynth.CipherAESGCM, Traffic: espsynth.TrafficTLS, Packets: 2, OneWay: true},
	} {
		for _, p := range fzSynthFlow(tb, 1, fl) {
			out = append(out, p.ESP)
		}
	}
	return out
}

// fzSynthFlow returns the decoded ESP packets of one espsynth flow, in order.
// Each packet owns its frame.
func fzSynthFlow(tb testing.TB, seed int64, fl espsynth.Flow) []packet.Packet {
	tb.Helper()
	g, err := espsynth.NewGenerator(seed, espsynth.Config{Flows: []espsynth.Flow{fl}})
	if err != nil {
		tb.Fatal(err)
	}
	var d packet.Decoder
	var out []packet.Packet
	for {
		frame, _, err := g.AppendPacket(nil)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			tb.Fatal(err)
		}
		var p packet.Packet
		if err := d.Decode(packet.LinkTypeEthernet, frame, &p); err != nil {
			tb.Fatal(err)
		}
		if p.Kind == packet.KindESP {
			out = append(out, p)
		}
	}
}

// TestFalseNullRandomPayloads is the false-null property: 2,000 flows of 4
// packets of uniformly random bytes (what a cipher emits), of many lengths,
// over IPv4 and IPv6, in plain ESP and in UDP, are never called null.
func TestFalseNullRandomPayloads(t *testing.T) {
	r := rand.New(rand.NewPCG(5879, 4303))
	e := heuristics.New(heuristics.Config{})
	const flows, perFlow = 2000, 4
	classes := map[heuristics.Class]int{}
	var p packet.Packet
	for f := 0; f < flows; f++ {
		spi := r.Uint32() | 0x100
		seq := r.Uint32N(1 << 20)
		v6 := f%2 == 1
		var st heuristics.FlowState
		var v heuristics.Verdict
		bnDecided := false
		// All four packets are observed, even after a final verdict:
		// more evidence must not turn random bytes null either.
		for i := 0; i < perFlow; i++ {
			// Lengths: every small length, then typical MTU-sized ones.
			n := 8 + (f*perFlow+i)%120
			if f%3 == 0 {
				n = 8 + r.IntN(1500)
			}
			esp := make([]byte, n)
			for j := range esp {
				esp[j] = byte(r.Uint32())
			}
			binary.BigEndian.PutUint32(esp, spi)
			binary.BigEndian.PutUint32(esp[4:], seq+uint32(i)+1)
			if !fzESPPacket(v6, packet.ProtoESP, esp, &p) {
				t.Fatalf("decoder rejected %d ESP bytes", n)
			}
			w, final := e.Observe(&st, &p)
			if w.Class == heuristics.Null {
				t.Fatalf("flow %d packet %d (%d bytes, v6 %v): random bytes called null: %+v evidence %v", f, i, n, v6, w, w.Evidence)
			}
			if !bnDecided {
				v, bnDecided = w, final
			}
		}
		classes[v.Class]++
	}
	t.Logf("%d random flows: %v", flows, classes)
	// Random ESP should be recognised as encrypted, not merely left
	// unknown: almost no candidate survives two packets.
	if classes[heuristics.Encrypted] < flows*95/100 {
		t.Errorf("only %d of %d random flows called encrypted: %v", classes[heuristics.Encrypted], flows, classes)
	}
}

// TestFalseNullCiphertext runs real ciphertext from every encrypting
// transform espsynth offers, over every inner traffic kind, through the
// engine: no flow may be called null, and most must be called encrypted.
func TestFalseNullCiphertext(t *testing.T) {
	e := heuristics.New(heuristics.Config{})
	ciphers := []espsynth.Cipher{espsynth.CipherAESCBC, espsynth.CipherAESCTR, espsynth.CipherAESGCM, espsynth.CipherChaCha20Poly1305, espsynth.Cipher3DES}
	classes := map[heuristics.Class]int{}
	n := 0
	for ci, c := range ciphers {
		for tr := espsynth.TrafficHTTP; tr <= espsynth.TrafficMixed; tr++ {
			for _, mode := range []espsynth.Mode{espsynth.Transport, espsynth.Tunnel} {
				fl := espsynth.Flow{Cipher: c, Auth: espsynth.AuthHMACSHA256, Mode: mode, Traffic: tr, Packets: 6, OneWay: true, Outer: espsynth.IPVersion(4 + 2*(ci%2))}
				var st heuristics.FlowState
				var v heuristics.Verdict
				bnDecided := false
				for i, p := range fzSynthFlow(t, int64(n), fl) {
					w, final := e.Observe(&st, &p)
					if w.Class == heuristics.Null {
						t.Fatalf("%v %v %v packet %d called null: %+v", c, tr, mode, i, w)
					}
					if !bnDecided {
						v, bnDecided = w, final
					}
				}
				classes[v.Class]++
				n++
			}
		}
	}
	t.Logf("%d encrypted flows: %v", n, classes)
	if classes[heuristics.Encrypted] < n*9/10 {
		t.Errorf("only %d of %d encrypted flows called encrypted: %v", classes[heuristics.Encrypted], n, classes)
	}
}
