package flowcache_test

import (
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net/netip"
	"sync"
	"testing"

	"github.com/espy-dpi/espy/espsynth"
	"github.com/espy-dpi/espy/flowcache"
	"github.com/espy-dpi/espy/packet"
)

var (
	peerA  = netip.MustParseAddr("192.0.2.1")
	peerB  = netip.MustParseAddr("198.51.100.1")
	peerA6 = netip.MustParseAddr("2001:db8::a")
	peerB6 = netip.MustParseAddr("2001:db8::b")

	t0 = int64(1_767_225_600) * 1e9 // 2026-01-01T00:00:00Z
)

const ms = int64(1e6)

// Tunnel-mode flows, so their ESP payloads can be re-addressed at will (the
// inner checksums do not cover the outer addresses).
var (
	nullFlow = espsynth.Flow{Cipher: espsynth.CipherNULL, Auth: espsynth.AuthHMACSHA256, Mode: espsynth.Tunnel, Traffic: espsynth.TrafficTLS, Packets: 40, OneWay: true}
	gcmFlow  = espsynth.Flow{Cipher: espsynth.CipherAESGCM, Mode: espsynth.Tunnel, Traffic: espsynth.TrafficTLS, Packets: 40, OneWay: true}
)

// synthESP returns the ESP payloads (SPI to ICV) of one espsynth flow.
func synthESP(tb testing.TB, seed int64, fl espsynth.Flow) [][]byte {
	tb.Helper()
	g, err := espsynth.NewGenerator(seed, espsynth.Config{Flows: []espsynth.Flow{fl}})
	if err != nil {
		tb.Fatal(err)
	}
	var d packet.Decoder
	var out [][]byte
	for {
		frame, _, err := g.AppendPacket(nil)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			tb.Fatal(err)
		}
		var p packet.Packet
		if err := d.Decode(packet.LinkTypeEthernet, frame, &p); err != nil || p.Kind != packet.KindESP {
			tb.Fatalf("synth frame: %v %v", err, p.Kind)
		}
		out = append(out, p.ESP)
	}
}

// flowSpec places ESP payloads on the wire.
type flowSpec struct {
	src, dst     netip.Addr
	spi          uint32
	encap        packet.Encap
	sport, dport uint16
}

// pkt builds the frame of esp (SPI and sequence number rewritten) as spec
// says, and decodes it: the Packet owns its frame.
func (fs flowSpec) pkt(tb testing.TB, esp []byte, seq uint32) packet.Packet {
	tb.Helper()
	body := append([]byte(nil), esp...)
	binary.BigEndian.PutUint32(body, fs.spi)
	binary.BigEndian.PutUint32(body[4:], seq)
	proto := uint8(packet.ProtoESP)
	if fs.encap == packet.EncapUDP {
		u := make([]byte, 8, 8+len(body))
		binary.BigEndian.PutUint16(u, fs.sport)
		binary.BigEndian.PutUint16(u[2:], fs.dport)
		binary.BigEndian.PutUint16(u[4:], uint16(8+len(body)))
		body, proto = append(u, body...), packet.ProtoUDP
	}
	var frame []byte
	if fs.src.Is4() {
		frame = make([]byte, 20, 20+len(body))
		frame[0] = 0x45
		binary.BigEndian.PutUint16(frame[2:], uint16(20+len(body)))
		frame[8], frame[9] = 64, proto
		s, d := fs.src.As4(), fs.dst.As4()
		copy(frame[12:], s[:])
		copy(frame[16:], d[:])
	} else {
		frame = make([]byte, 40, 40+len(body))
		frame[0] = 0x60
		binary.BigEndian.PutUint16(frame[4:], uint16(len(body)))
		frame[6], frame[7] = proto, 64
		s, d := fs.src.As16(), fs.dst.As16()
		copy(frame[8:], s[:])
		copy(frame[24:], d[:])
	}
	frame = append(frame, body...)
	var d packet.Decoder
	var p packet.Packet
	if err := d.Decode(packet.LinkTypeRaw, frame, &p); err != nil || p.Kind != packet.KindESP {
		tb.Fatalf("built frame: %v %v", err, p.Kind)
	}
	return p
}

// garbage is an ESP packet of random bytes after the header.
func garbage(tb testing.TB, fs flowSpec, r *rand.Rand, seq uint32) packet.Packet {
	b := make([]byte, 8+64+r.IntN(1200))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return fs.pkt(tb, b, seq)
}

// recorder collects events; OnEvent runs with a shard locked, and shards
// run concurrently.
type recorder struct {
	mu     sync.Mutex
	events []flowcache.Event
}

func (r *recorder) on(e flowcache.Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

func (r *recorder) count(t flowcache.EventType, match func(flowcache.Event) bool) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.events {
		if e.Type == t && (match == nil || match(e)) {
			n++
		}
	}
	return n
}

func (r *recorder) reset() {
	r.mu.Lock()
	r.events = r.events[:0]
	r.mu.Unlock()
}
