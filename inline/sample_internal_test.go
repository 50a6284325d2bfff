package inline

import (
	"encoding/binary"
	"net/netip"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/espy-dpi/espy/ebpf"
	"github.com/espy-dpi/espy/espsynth"
	"github.com/espy-dpi/espy/flowcache"
	"github.com/espy-dpi/espy/heuristics"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// TestHandleNewFlowAllocs: deciding a new flow from its sample (decode,
// flow cache, verdict record into the held output, batch entry) does not
// allocate once the tables have grown. Writing the batch (SetVerdicts) is
// measured by ebpf's BenchmarkSetVerdicts (0 allocs per verdict).
func TestHandleNewFlowAllocs(t *testing.T) {
	d, one, _ := newFlowSamples(t)
	decided := d.cache.Stats().Decisions
	for range 5000 { // grow the tables: 64 shards of 128 flows
		one()
	}
	if n := testing.AllocsPerRun(1000, one); n != 0 {
		t.Errorf("%.2f allocations per new flow", n)
	}
	if got := d.cache.Stats().Decisions - decided; got != 6001 {
		t.Errorf("%d flows decided of 6001", got)
	}
}

// BenchmarkHandleNewFlow is the userspace cost of a new flow's sample
// without the system calls: decode, flow cache (heuristics, table insert),
// verdict record into the held output, batch entry. Compare it with the
// sample loop's CPU time per sample in the netns tests (docs/inline-perf.md)
// to see what the ring read and the batch writes add.
//
// cpu-ns/op is the thread's CPU time per new flow, which the other loads
// of a shared machine do not inflate as they do ns/op.
func BenchmarkHandleNewFlow(b *testing.B) {
	_, one, _ := newFlowSamples(b)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b.ReportAllocs()
	cpu0 := threadCPU()
	for b.Loop() {
		one()
	}
	b.ReportMetric(float64(threadCPU()-cpu0)/float64(b.N), "cpu-ns/op")
}

// newFlowSamples returns a daemon without a fast path and a function that
// hands it the sample of one more new ESP-NULL flow (tunnel mode, inner
// HTTP, decided on its first packet), flushing as the sample loop would.
// With d.prog set (before the first call) the flushes write the verdicts
// to the fast path.
func newFlowSamples(tb testing.TB) (d *Daemon, one func(), frame []byte) {
	t := tb
	src, dst := netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("198.51.100.10")
	g, err := espsynth.NewGenerator(2, espsynth.Config{Flows: []espsynth.Flow{{
		Initiator: src, Responder: dst, SPI: [2]uint32{0x1000, 1},
		Mode: espsynth.Tunnel, Traffic: espsynth.TrafficHTTP, Cipher: espsynth.CipherNULL,
		Auth: espsynth.AuthHMACSHA256, Packets: 1, OneWay: true,
	}}})
	if err != nil {
		t.Fatal(err)
	}
	frame, _, err = g.AppendPacket(nil)
	if err != nil {
		t.Fatal(err)
	}
	const spiOff = 14 + 20
	out, err := OpenOutput(filepath.Join(t.TempDir(), "verdicts.jsonl"), nil)
	if err != nil {
		t.Fatal(err)
	}
	tb.Cleanup(func() { out.Close() })
	d = &Daemon{out: out, log: zerolog.Nop(), m: newMetrics(prometheus.NewRegistry(), nil)}
	d.cache, err = flowcache.New(heuristics.New(heuristics.Config{}), flowcache.Config{Capacity: 1 << 20, Reserve: 262144, OnEvent: d.onEvent})
	if err != nil {
		t.Fatal(err)
	}
	key, err := ebpf.NewFlowKey(src, dst, 0, ebpf.EncapNone, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	spi := uint32(0x1000)
	now := time.Now().UnixNano() // per batch, as in the sample loop
	one = func() {
		spi++
		binary.BigEndian.PutUint32(frame[spiOff:], spi)
		key.Spi = spi
		s := ebpf.Sample{Frame: frame, OrigLen: uint32(len(frame)), Key: key, L3Off: 14, ESPOff: spiOff}
		d.handle(&s, now)
		if d.prog != nil && d.batch.verdicts.Len() == maxBatch {
			d.flush()
			out.Hold()
			now = time.Now().UnixNano()
		}
		if d.batch.verdicts.Len() == maxBatch {
			// What flush does, without a fast path to write to.
			d.batch.verdicts.Reset()
			d.batch.first = d.batch.first[:0]
			if err := out.Release(); err != nil {
				t.Fatal(err)
			}
			out.Hold()
			now = time.Now().UnixNano()
		}
	}
	out.Hold()
	return d, one, frame
}
