package verdictlog

import (
	"math/rand/v2"
	"testing"
	"time"
)

// TestAppendTimestamp: appendTimestamp writes what AppendFormat writes with
// the same layout, at the edges of days, months, leap years, centuries and
// the layout's year range, and at random instants over 10,000 years.
func TestAppendTimestamp(t *testing.T) {
	times := []time.Time{
		time.Unix(0, 0),
		time.Unix(-1, 999999999),
		time.Unix(-86400, 0),
		time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(0, 12, 31, 23, 59, 59, 1, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(-5, 3, 1, 0, 0, 0, 0, time.UTC),
		time.Date(1600, 2, 29, 12, 0, 0, 5, time.UTC),
		time.Date(1900, 2, 28, 23, 59, 59, 0, time.UTC),
		time.Date(1900, 3, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2000, 2, 29, 0, 0, 0, 0, time.UTC),
		time.Date(2024, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(2026, 11, 27, 18, 30, 1, 123456789, time.UTC),
		time.Date(2100, 3, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2026, 6, 1, 2, 0, 0, 0, time.FixedZone("UTC+2", 7200)),
	}
	r := rand.New(rand.NewPCG(1, 2))
	lo, hi := time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC).Unix(), time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC).Unix()
	for range 100000 {
		times = append(times, time.Unix(lo+r.Int64N(hi-lo), r.Int64N(1e9)))
	}
	for range 10000 { // near now, where the daemon writes
		times = append(times, time.Unix(1_700_000_000+r.Int64N(1e9), r.Int64N(1e9)))
	}
	for _, tm := range times {
		want := tm.UTC().AppendFormat(nil, tsLayout)
		if got := appendTimestamp(nil, tm); string(got) != string(want) {
			t.Fatalf("%v (Unix %d): got %s, want %s", tm, tm.Unix(), got, want)
		}
	}
}

func BenchmarkAppendTimestamp(b *testing.B) {
	tm := time.Date(2026, 11, 27, 18, 30, 1, 123456789, time.UTC)
	buf := make([]byte, 0, 64)
	b.Run("appendTimestamp", func(b *testing.B) {
		for b.Loop() {
			buf = appendTimestamp(buf[:0], tm)
		}
	})
	b.Run("AppendFormat", func(b *testing.B) {
		for b.Loop() {
			buf = tm.UTC().AppendFormat(buf[:0], tsLayout)
		}
	})
}
