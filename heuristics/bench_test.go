package heuristics_test

import (
	"encoding/binary"
	"testing"

	"github.com/espy-dpi/espy/espsynth"
	"github.com/espy-dpi/espy/heuristics"
	"github.com/espy-dpi/espy/packet"
)

// The flows the benchmarks and the allocation test use: a NULL tunnel of
// inner IPv4 TCP (TLS records, segments up to ~1.2 KB) with HMAC-SHA-256,
// the same traffic under AES-GCM, and a NULL tunnel of small HTTP segments.
var (
	bnNullTunnelTCP   = espsynth.Flow{Cipher: espsynth.CipherNULL, Auth: espsynth.AuthHMACSHA256, Mode: espsynth.Tunnel, Traffic: espsynth.TrafficTLS, Packets: 64, OneWay: true}
	bnGCMTunnelTCP    = espsynth.Flow{Cipher: espsynth.CipherAESGCM, Mode: espsynth.Tunnel, Traffic: espsynth.TrafficTLS, Packets: 64, OneWay: true}
	bnNullTunnelSmall = espsynth.Flow{Cipher: espsynth.CipherNULL, Auth: espsynth.AuthHMACSHA256, Mode: espsynth.Tunnel, Traffic: espsynth.TrafficHTTP, Packets: 64, OneWay: true}
)

// bnDecided observes pkts until the engine decides and returns the verdict.
func bnDecided(tb testing.TB, e *heuristics.Engine, pkts []packet.Packet, want heuristics.Class) heuristics.Verdict {
	tb.Helper()
	var st heuristics.FlowState
	for i := range pkts {
		if v, final := e.Observe(&st, &pkts[i]); final {
			if v.Class != want {
				tb.Fatalf("flow bnDecided %v, want %v: %+v", v.Class, want, v)
			}
			return v
		}
	}
	tb.Fatalf("flow of %d packets not bnDecided", len(pkts))
	return heuristics.Verdict{}
}

// bnLargest returns the index of the longest packet: the benchmarks measure a
// full-size segment, not a bare handshake.
func bnLargest(pkts []packet.Packet) int {
	best := 0
	for i := range pkts {
		if len(pkts[i].ESP) > len(pkts[best].ESP) {
			best = i
		}
	}
	return best
}

func BenchmarkObserveNewFlow(b *testing.B) {
	for _, bc := range []struct {
		name string
		flow espsynth.Flow
	}{{"null-tunnel-tcp", bnNullTunnelTCP}, {"null-tunnel-tcp-small", bnNullTunnelSmall}, {"aes-gcm", bnGCMTunnelTCP}} {
		b.Run(bc.name, func(b *testing.B) {
			pkts := fzSynthFlow(b, 1, bc.flow)
			p := &pkts[bnLargest(pkts)]
			e := heuristics.New(heuristics.Config{})
			var st heuristics.FlowState
			b.ReportAllocs()
			for b.Loop() {
				st = heuristics.FlowState{}
				e.Observe(&st, p)
			}
			b.ReportMetric(float64(len(p.ESP)), "esp-bytes")
		})
	}
}

// BenchmarkObserveToVerdict is the whole undecided life of a flow: packets
// observed until the verdict is final.
func BenchmarkObserveToVerdict(b *testing.B) {
	for _, bc := range []struct {
		name string
		flow espsynth.Flow
		want heuristics.Class
	}{{"null-tunnel-tcp", bnNullTunnelTCP, heuristics.Null}, {"aes-gcm", bnGCMTunnelTCP, heuristics.Encrypted}} {
		b.Run(bc.name, func(b *testing.B) {
			pkts := fzSynthFlow(b, 1, bc.flow)
			e := heuristics.New(heuristics.Config{RekeyEntries: -1})
			v := bnDecided(b, e, pkts, bc.want)
			b.ReportAllocs()
			for b.Loop() {
				var st heuristics.FlowState
				for i := range pkts {
					if _, final := e.Observe(&st, &pkts[i]); final {
						break
					}
				}
			}
			b.ReportMetric(float64(v.Packets), "packets/verdict")
		})
	}
}

func BenchmarkWatchDecidedNull(b *testing.B) {
	pkts := fzSynthFlow(b, 1, bnNullTunnelTCP)
	e := heuristics.New(heuristics.Config{})
	v := bnDecided(b, e, pkts, heuristics.Null)
	var m heuristics.Monitor
	now := int64(1_767_225_600) * 1e9
	seq := uint32(1000)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		p := &pkts[i%len(pkts)]
		i++
		// Sequence numbers keep rising, as on the wire, so every packet
		// takes the full check rather than the replay shortcut.
		seq++
		binary.BigEndian.PutUint32(p.ESP[4:], seq)
		if r := e.Watch(&m, &v, p, now+int64(i)*1000); r != heuristics.KeepVerdict {
			b.Fatalf("packet %d withdrew the verdict: %v", i, r)
		}
	}
}

// TestObserveWatchZeroAllocs holds the package's promise that per-packet methods
// do not allocate: Observe on a fresh and on a running flow, Watch,
// Decapsulate and Remember.
func TestObserveWatchZeroAllocs(t *testing.T) {
	e := heuristics.New(heuristics.Config{})
	null := fzSynthFlow(t, 1, bnNullTunnelTCP)
	gcm := fzSynthFlow(t, 1, bnGCMTunnelTCP)
	v := bnDecided(t, e, null, heuristics.Null)
	ve := bnDecided(t, e, gcm, heuristics.Encrypted)
	var st heuristics.FlowState
	var m heuristics.Monitor
	var in heuristics.Inner
	seq := uint32(100)
	now := int64(1_767_225_600) * 1e9
	for _, tc := range []struct {
		name string
		fn   func()
	}{
		{"Observe/new-null", func() { st = heuristics.FlowState{}; e.Observe(&st, &null[3]) }},
		{"Observe/new-encrypted", func() { st = heuristics.FlowState{}; e.Observe(&st, &gcm[3]) }},
		{"Observe/running", func() { e.Observe(&st, &null[5]) }},
		{"Watch/null", func() {
			seq++
			binary.BigEndian.PutUint32(null[4].ESP[4:], seq)
			now += 1e6
			e.Watch(&m, &v, &null[4], now)
		}},
		{"Watch/encrypted", func() { e.Watch(&m, &ve, &gcm[4], now) }},
		{"Decapsulate", func() {
			if !heuristics.Decapsulate(&v, &null[6], &in) {
				t.Fatal("NULL packet does not decapsulate")
			}
		}},
		{"Remember", func() { e.Remember(&v, &null[7]) }},
	} {
		if a := testing.AllocsPerRun(500, tc.fn); a != 0 {
			t.Errorf("%s: %v allocations per call", tc.name, a)
		}
	}
}
