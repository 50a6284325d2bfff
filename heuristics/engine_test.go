package heuristics_test

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"testing"

	"github.com/espy-dpi/espy/espsynth"
	"github.com/espy-dpi/espy/heuristics"
	"github.com/espy-dpi/espy/packet"
)

// flowPackets generates the ESP packets of one one-way flow.
func flowPackets(t testing.TB, seed int64, f espsynth.Flow) [][]byte {
	t.Helper()
	f.OneWay = true
	g, err := espsynth.NewGenerator(seed, espsynth.Config{Flows: []espsynth.Flow{f}})
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for {
		b, _, err := g.AppendPacket(nil)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
}

func decode(t testing.TB, frame []byte) *packet.Packet {
	t.Helper()
	var d packet.Decoder
	p := new(packet.Packet)
	if err := d.Decode(packet.LinkTypeEthernet, frame, p); err != nil {
		t.Fatalf("decode: %v", err)
	}
	if p.Kind != packet.KindESP {
		t.Fatalf("decode: kind %v, want esp", p.Kind)
	}
	return p
}

// run feeds frames to a fresh flow state until a final verdict.
func run(t testing.TB, e *heuristics.Engine, frames [][]byte) (heuristics.Verdict, int) {
	t.Helper()
	var st heuristics.FlowState
	var v heuristics.Verdict
	for i, fr := range frames {
		var final bool
		v, final = e.Observe(&st, decode(t, fr))
		if final {
			return v, i + 1
		}
	}
	return v, len(frames)
}

func TestNullFlows(t *testing.T) {
	e := heuristics.New(heuristics.Config{})
	type tc struct {
		name string
		flow espsynth.Flow
		icv  uint8
		iv   uint8
		mode heuristics.Mode
	}
	var cases []tc
	auths := []espsynth.Auth{espsynth.AuthNone, espsynth.AuthHMACSHA1, espsynth.AuthHMACSHA256, espsynth.AuthHMACSHA384, espsynth.AuthHMACSHA512}
	traffics := []espsynth.Traffic{espsynth.TrafficHTTP, espsynth.TrafficDNS, espsynth.TrafficICMP, espsynth.TrafficSCTP, espsynth.TrafficUDPRandom, espsynth.TrafficTLS}
	i := 0
	for _, outer := range []espsynth.IPVersion{espsynth.IPv4, espsynth.IPv6} {
		for _, mode := range []espsynth.Mode{espsynth.Transport, espsynth.Tunnel} {
			for _, encap := range []espsynth.Encap{espsynth.EncapNone, espsynth.EncapUDP} {
				for _, cipher := range []espsynth.Cipher{espsynth.CipherNULL, espsynth.CipherNullAuthAESGMAC} {
					for _, pad := range []espsynth.Padding{espsynth.PaddingMinimal, espsynth.PaddingExtra, espsynth.PaddingTFC} {
						if pad == espsynth.PaddingTFC && mode != espsynth.Tunnel {
							continue
						}
						i++
						f := espsynth.Flow{
							Outer: outer, Mode: mode, Encap: encap, Cipher: cipher, Padding: pad,
							Auth: auths[i%len(auths)], Traffic: traffics[i%len(traffics)], Packets: 6,
							Inner: []espsynth.IPVersion{espsynth.IPv4, espsynth.IPv6}[i%2],
						}
						icv := uint8(f.Auth.ICVLen())
						var iv uint8
						if cipher == espsynth.CipherNullAuthAESGMAC {
							icv, iv = 16, 8
						}
						m := heuristics.ModeTransport
						if mode == espsynth.Tunnel {
							m = heuristics.ModeTunnel
						}
						name := fmt.Sprintf("v%d/%s/%s/%s/%s/%s/%d", outer, mode, encap, cipher, f.Auth, pad, f.Traffic)
						cases = append(cases, tc{name, f, icv, iv, m})
					}
				}
			}
		}
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v, n := run(t, e, flowPackets(t, int64(i+1), c.flow))
			if v.Class != heuristics.Null || v.ICVLen != c.icv || v.IVLen != c.iv || v.Mode != c.mode {
				t.Fatalf("verdict %v icv %d iv %d mode %v after %d packets (score %d, %v); want null icv %d iv %d mode %v",
					v.Class, v.ICVLen, v.IVLen, v.Mode, n, v.Score, v.Evidence, c.icv, c.iv, c.mode)
			}
			if n > 2 {
				t.Errorf("decided on packet %d, want by the second", n)
			}
			if v.Source != heuristics.SourceHeuristic {
				t.Errorf("source %v, want heuristic", v.Source)
			}
		})
	}
}

func TestEncryptedFlows(t *testing.T) {
	e := heuristics.New(heuristics.Config{})
	ciphers := []espsynth.Cipher{espsynth.CipherAESCBC, espsynth.CipherAESCTR, espsynth.CipherAESGCM, espsynth.CipherChaCha20Poly1305, espsynth.Cipher3DES}
	for i, c := range ciphers {
		for _, auth := range []espsynth.Auth{espsynth.AuthNone, espsynth.AuthHMACSHA1, espsynth.AuthHMACSHA512} {
			for _, outer := range []espsynth.IPVersion{espsynth.IPv4, espsynth.IPv6} {
				f := espsynth.Flow{Outer: outer, Cipher: c, Auth: auth, Packets: 6, Traffic: espsynth.TrafficHTTP}
				t.Run(fmt.Sprintf("%s/%s/v%d", c, auth, outer), func(t *testing.T) {
					v, n := run(t, e, flowPackets(t, int64(100+i), f))
					if v.Class != heuristics.Encrypted {
						t.Fatalf("verdict %v after %d packets (score %d); want encrypted", v.Class, n, v.Score)
					}
					if n != 2 {
						t.Errorf("decided on packet %d, want 2 (EncryptedAfter)", n)
					}
				})
			}
		}
	}
}

// espPacket builds a packet.Packet around a hand-made ESP payload.
func espPacket(esp []byte) *packet.Packet {
	hdr := make([]byte, 20)
	hdr[0] = 0x45
	copy(hdr[12:], []byte{192, 0, 2, 1, 198, 51, 100, 1})
	return &packet.Packet{
		Kind: packet.KindESP, Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("198.51.100.1"),
		IPHeader: hdr, ESP: esp,
	}
}

// nullESP wraps payload as ESP-NULL with next header nh, minimal padding and
// an ICV of icv bytes.
func nullESP(spi, seq uint32, payload []byte, nh uint8, icv int) []byte {
	b := []byte{byte(spi >> 24), byte(spi >> 16), byte(spi >> 8), byte(spi), byte(seq >> 24), byte(seq >> 16), byte(seq >> 8), byte(seq)}
	b = append(b, payload...)
	pad := (4 - (len(payload)+2)%4) % 4
	for i := 1; i <= pad; i++ {
		b = append(b, byte(i))
	}
	b = append(b, byte(pad), nh)
	for i := 0; i < icv; i++ {
		b = append(b, byte(0xa5^i*7))
	}
	return b
}

func TestUnknownNextHeaderIsNeverEncrypted(t *testing.T) {
	e := heuristics.New(heuristics.Config{})
	var st heuristics.FlowState
	payload := make([]byte, 61) // with pad 1 the trailer has a pad byte
	for i := range payload {
		payload[i] = byte(i * 13)
	}
	var v heuristics.Verdict
	var final bool
	for seq := uint32(1); seq <= 16 && !final; seq++ {
		v, final = e.Observe(&st, espPacket(nullESP(0x1000, seq, payload, 115, 12))) // L2TPv3
	}
	if v.Class != heuristics.Unknown {
		t.Fatalf("verdict %v, want unknown", v.Class)
	}
	if v.Evidence&heuristics.EvUnknownNextHeader == 0 {
		t.Errorf("evidence %v lacks unknown-next-header", v.Evidence)
	}
	if !final {
		t.Errorf("not final after MaxPackets")
	}
}

func TestWESP(t *testing.T) {
	e := heuristics.New(heuristics.Config{})
	udp := []byte{0x30, 0x39, 0x00, 0x35, 0, 0, 0, 0}
	udp[5] = byte(len(udp))
	inner := nullESP(0x2000, 1, udp, 17, 16)
	tests := []struct {
		name  string
		w     packet.WESP
		class heuristics.Class
		ev    heuristics.Evidence
	}{
		{"null", packet.WESP{NextHeader: 17, HdrLen: 12, TrlLen: 16}, heuristics.Null, heuristics.EvWESP},
		{"encrypted", packet.WESP{HdrLen: 12, TrlLen: 16, Flags: packet.WESPFlagEncrypted}, heuristics.Encrypted, heuristics.EvWESP},
		{"next header mismatch", packet.WESP{NextHeader: 6, HdrLen: 12, TrlLen: 16}, heuristics.Unknown, heuristics.EvWESPMismatch},
		{"wrong trailer length", packet.WESP{NextHeader: 17, HdrLen: 12, TrlLen: 12}, heuristics.Unknown, heuristics.EvWESPMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := espPacket(inner)
			p.Kind, p.WESP = packet.KindWESP, tt.w
			var st heuristics.FlowState
			v, final := e.Observe(&st, p)
			if !final || v.Class != tt.class || v.Source != heuristics.SourceWESP || v.Evidence&tt.ev == 0 {
				t.Fatalf("got %v/%v final=%v evidence %v; want %v with %v", v.Class, v.Source, final, v.Evidence, tt.class, tt.ev)
			}
			if tt.class == heuristics.Null && (v.ICVLen != 16 || v.IVLen != 0 || v.NextHeader != 17) {
				t.Errorf("icv %d iv %d nh %d, want 16 0 17", v.ICVLen, v.IVLen, v.NextHeader)
			}
		})
	}
}

func TestRekeyShortcut(t *testing.T) {
	e := heuristics.New(heuristics.Config{})
	// A UDP datagram with a zero checksum and no padding needed: 16 + 10
	// bits on one packet, below the threshold of 40.
	udp := []byte{0x30, 0x39, 0x00, 0x35, 0, 14, 0, 0, 1, 2, 3, 4, 5, 6}
	var st heuristics.FlowState
	v, final := e.Observe(&st, espPacket(nullESP(0x3000, 1, udp, 17, 12)))
	if final {
		t.Fatalf("first SA decided on one weak packet: %v", v.Class)
	}
	v, final = e.Observe(&st, espPacket(nullESP(0x3000, 2, udp, 17, 12)))
	if !final || v.Class != heuristics.Null {
		t.Fatalf("first SA: %v final=%v score %d, want null", v.Class, final, v.Score)
	}
	e.Remember(&v, espPacket(nullESP(0x3000, 2, udp, 17, 12)))

	// The rekeyed SA: same peers, same inner ports, new SPI.
	var st2 heuristics.FlowState
	v2, final := e.Observe(&st2, espPacket(nullESP(0x3001, 1, udp, 17, 12)))
	if !final || v2.Class != heuristics.Null || v2.Source != heuristics.SourceRekey || v2.ICVLen != 12 {
		t.Fatalf("rekeyed SA: %v/%v final=%v icv %d, want null/rekey icv 12 on packet 1", v2.Class, v2.Source, final, v2.ICVLen)
	}

	// Another inner flow on the new SA is not covered by the shortcut.
	other := append([]byte(nil), udp...)
	other[1] = 0x3a
	var st3 heuristics.FlowState
	if v3, final := e.Observe(&st3, espPacket(nullESP(0x3002, 1, other, 17, 12))); final {
		t.Fatalf("unrelated inner flow decided at once: %v/%v", v3.Class, v3.Source)
	}
}

func TestRevocationHysteresis(t *testing.T) {
	e := heuristics.New(heuristics.Config{})
	frames := flowPackets(t, 7, espsynth.Flow{Cipher: espsynth.CipherNULL, Auth: espsynth.AuthHMACSHA256, Packets: 100, Traffic: espsynth.TrafficHTTP})
	v, _ := run(t, e, frames[:2])
	if v.Class != heuristics.Null {
		t.Fatalf("verdict %v, want null", v.Class)
	}
	garbage := func(seq uint32) *packet.Packet {
		b := make([]byte, 120)
		for i := range b {
			b[i] = byte(i*31 + int(seq))
		}
		b[4], b[5], b[6], b[7] = byte(seq>>24), byte(seq>>16), byte(seq>>8), byte(seq)
		b[len(b)-16-2] = 0xee // not a valid pad length
		return espPacket(b)
	}
	var m heuristics.Monitor
	now := int64(1e18)
	seq := uint32(2)
	for _, fr := range frames[2:] {
		p := decode(t, fr)
		seq = p.Seq()
		if w := e.Watch(&m, &v, p, now); w != heuristics.KeepVerdict {
			t.Fatalf("good packet withdrew the verdict: %v", w)
		}
		now += 1e6
	}
	// A few junk packets, even in a burst, cannot flip the flow.
	for i := 0; i < 5; i++ {
		seq++
		if w := e.Watch(&m, &v, garbage(seq), now); w != heuristics.KeepVerdict {
			t.Fatalf("junk packet %d withdrew the verdict: %v", i, w)
		}
	}
	// Replays (sequence numbers far below the highest) do not count.
	for i := 0; i < 100; i++ {
		if w := e.Watch(&m, &v, garbage(1), now); w != heuristics.KeepVerdict {
			t.Fatalf("replayed junk withdrew the verdict: %v", w)
		}
	}
	// Persistent garbage does.
	for i := 0; i < 100; i++ {
		seq++
		now += 1e6
		if w := e.Watch(&m, &v, garbage(seq), now); w == heuristics.Garbage {
			return
		}
	}
	t.Fatal("100 garbage packets in 100 ms did not withdraw the verdict")
}

func TestSPIReuse(t *testing.T) {
	e := heuristics.New(heuristics.Config{})
	v := heuristics.Verdict{Class: heuristics.Encrypted, Source: heuristics.SourceHeuristic}
	var m heuristics.Monitor
	b := make([]byte, 64)
	p := espPacket(b)
	for seq := uint32(1); seq <= 5000; seq += 7 {
		b[4], b[5], b[6], b[7] = byte(seq>>24), byte(seq>>16), byte(seq>>8), byte(seq)
		if w := e.Watch(&m, &v, p, 0); w != heuristics.KeepVerdict {
			t.Fatalf("seq %d: %v", seq, w)
		}
	}
	// One spoofed restart is not enough; four increasing ones are.
	for seq := byte(1); seq <= 4; seq++ {
		b[7] = seq
		b[4], b[5], b[6] = 0, 0, 0
		w := e.Watch(&m, &v, p, 0)
		if seq < 4 && w != heuristics.KeepVerdict {
			t.Fatalf("restarted seq %d withdrew the verdict: %v", seq, w)
		}
		if seq == 4 && w != heuristics.SPIReuse {
			t.Fatalf("four restarted sequence numbers: %v, want spi-reuse", w)
		}
	}
	// An extended sequence number wrapping is not a restart.
	var m2 heuristics.Monitor
	for _, seq := range []uint32{0xfffffff0, 0xfffffffe, 1, 2, 3, 4, 5} {
		b[4], b[5], b[6], b[7] = byte(seq>>24), byte(seq>>16), byte(seq>>8), byte(seq)
		if w := e.Watch(&m2, &v, p, 0); w != heuristics.KeepVerdict {
			t.Fatalf("ESN wrap at seq %#x: %v", seq, w)
		}
	}
}

func TestDecapsulate(t *testing.T) {
	e := heuristics.New(heuristics.Config{})
	frames := flowPackets(t, 9, espsynth.Flow{Mode: espsynth.Tunnel, Inner: espsynth.IPv4, Cipher: espsynth.CipherNULL, Auth: espsynth.AuthHMACSHA1, Padding: espsynth.PaddingTFC, Packets: 4, Traffic: espsynth.TrafficDNS})
	v, _ := run(t, e, frames)
	p := decode(t, frames[0])
	var in heuristics.Inner
	if !heuristics.Decapsulate(&v, p, &in) {
		t.Fatal("Decapsulate failed on the flow's first packet")
	}
	if in.NextHeader != 4 || in.Proto != 17 || in.DstPort != 53 && in.SrcPort != 53 {
		t.Errorf("inner %+v: want IPv4/UDP with port 53", in)
	}
	if got := int(in.Datagram[2])<<8 | int(in.Datagram[3]); got != len(in.Datagram) {
		t.Errorf("datagram is %d bytes, its header says %d: TFC padding not cut", len(in.Datagram), got)
	}
}
