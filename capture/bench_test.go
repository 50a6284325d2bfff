package capture

import (
	"bytes"
	"io"
	"runtime"
	"testing"
)

// bigPcap is an in-memory classic pcap of n frames of mixed sizes.
func bigPcap(n int) []byte {
	sizes := []int{60, 98, 590, 1514, 150, 1438}
	recs := make([]pcapRec, n)
	for i := range recs {
		recs[i] = pcapRec{sec: uint32(1700000000 + i/1000), frac: uint32(i % 1000 * 1000), data: frame(sizes[i%len(sizes)], byte(i))}
	}
	return buildPcap(le, 0xa1b2c3d4, 262144, 1, recs...)
}

// bigPcapng is the same frames as enhanced packet blocks at ns resolution.
func bigPcapng(n int) []byte {
	sizes := []int{60, 98, 590, 1514, 150, 1438}
	w := &ngBuilder{o: le}
	w.shb().idb(LinkTypeEthernet, 262144, w.opt(optTSResol, []byte{9}))
	for i := range n {
		w.epb(0, 1700000000_000000000+uint64(i)*1000, frame(sizes[i%len(sizes)], byte(i)), 0)
	}
	return w.b
}

// TestNextDoesNotAllocate proves the per-packet path allocation-free.
func TestNextDoesNotAllocate(t *testing.T) {
	for name, file := range map[string][]byte{"pcap": bigPcap(2000), "pcapng": bigPcapng(2000)} {
		r, err := NewReader(name, bytes.NewReader(file))
		if err != nil {
			t.Fatal(err)
		}
		allocs := testing.AllocsPerRun(1000, func() {
			if _, err := r.Next(); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("%s: Next allocates %.1f times per packet", name, allocs)
		}
	}
}

func benchmarkRead(b *testing.B, file []byte, n int) {
	rd := bytes.NewReader(file)
	b.SetBytes(int64(len(file)))
	b.ReportAllocs()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for b.Loop() {
		rd.Reset(file)
		r, err := NewReader("bench", rd)
		if err != nil {
			b.Fatal(err)
		}
		got := 0
		for {
			_, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			got++
		}
		if got != n {
			b.Fatalf("read %d packets, want %d", got, n)
		}
	}
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "packets/s")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(n*b.N), "allocs/packet")
}

// BenchmarkReadPcap reads 100000 packets of classic pcap per op; the
// allocations per op are the Reader's and its buffer's, none per packet.
func BenchmarkReadPcap(b *testing.B) { benchmarkRead(b, bigPcap(100000), 100000) }

// BenchmarkReadPcapng reads the same packets as pcapng enhanced packet blocks.
func BenchmarkReadPcapng(b *testing.B) { benchmarkRead(b, bigPcapng(100000), 100000) }
