package esp

import (
	"errors"
	"testing"
)

// TestNoAllocs proves the per-packet path allocates nothing once the SA
// exists, for every algorithm, with and without ESN.
func TestNoAllocs(t *testing.T) {
	for _, s := range suites {
		for _, esn := range []bool{false, true} {
			o, in := pair(t, s, esn)
			payload := make([]byte, 1400)
			buf := make([]byte, 0, 1600)
			work := make([]byte, 1600)
			n := testing.AllocsPerRun(200, func() {
				pkt, err := o.Seal(buf, payload, 4)
				if err != nil {
					t.Fatal(err)
				}
				w := work[:len(pkt)]
				copy(w, pkt)
				if _, _, _, err := in.Open(w); err != nil {
					t.Fatal(err)
				}
				// Drops must not allocate either: a replay and a
				// forged ICV.
				copy(w, pkt)
				if _, _, _, err := in.Open(w); !errors.Is(err, ErrReplay) {
					t.Fatal(err)
				}
				pkt[len(pkt)-1] ^= 1
				pkt[4]++
				if _, _, _, err := in.Open(pkt); !errors.Is(err, ErrAuth) {
					t.Fatal(err)
				}
			})
			if n != 0 {
				t.Errorf("%s esn=%v: %v allocations per packet", s.name, esn, n)
			}
		}
	}
}

func BenchmarkSeal(b *testing.B) {
	for _, s := range suites {
		b.Run(s.name, func(b *testing.B) {
			o, _ := pair(b, s, false)
			payload := make([]byte, 1400)
			buf := make([]byte, 0, 1600)
			b.SetBytes(int64(len(payload)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := o.Seal(buf, payload, 4); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkOpen(b *testing.B) {
	for _, s := range suites {
		b.Run(s.name, func(b *testing.B) {
			o, in := pair(b, s, false)
			payload := make([]byte, 1400)
			// Enough distinct packets that the window never rejects: seal
			// a batch, open it, reseal when exhausted.
			const batch = 4096
			pkts := make([][]byte, batch)
			fill := func() {
				for i := range pkts {
					pkts[i], _ = o.Seal(pkts[i][:0], payload, 4)
				}
			}
			fill()
			work := make([]byte, 1600)
			b.SetBytes(int64(len(payload)))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if i == batch {
					b.StopTimer()
					fill()
					i = 0
					b.StartTimer()
				}
				w := work[:len(pkts[i])]
				copy(w, pkts[i])
				if _, _, _, err := in.Open(w); err != nil && !errors.Is(err, ErrReplay) {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}
