package capture

import (
	"errors"
	"io"
	"runtime"
	"testing"
)

// endless serves a header and then the same records over and over, up to
// limit bytes, without holding the stream in memory.
type endless struct {
	header, records []byte
	pos, limit      int64
}

func (e *endless) Read(p []byte) (int, error) {
	if e.pos >= e.limit {
		return 0, io.EOF
	}
	n := 0
	for n < len(p) && e.pos < e.limit {
		var src []byte
		if e.pos < int64(len(e.header)) {
			src = e.header[e.pos:]
		} else {
			src = e.records[(e.pos-int64(len(e.header)))%int64(len(e.records)):]
		}
		c := copy(p[n:], src[:min(int64(len(src)), e.limit-e.pos)])
		n += c
		e.pos += int64(c)
	}
	return n, nil
}

// TestBoundedMemory streams 256 MiB of pcap, including records of the
// maximum captured length, and 64 MiB of pcapng blocks to skip, and checks
// that the reader allocates nothing beyond its fixed buffer.
func TestBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 320 MiB")
	}
	file := buildPcap(le, 0xa1b2c3d4, 0, 1,
		pcapRec{data: frame(MaxCaptureLength, 1)}, pcapRec{data: frame(60, 2)}, pcapRec{data: frame(1514, 3)})
	w := &ngBuilder{o: le}
	w.shb().idb(LinkTypeEthernet, 0)
	ngHeader := w.b
	w.b, w.starts = nil, nil
	w.block(0x40000bad, make([]byte, 1<<20-12)).epb(0, 1, frame(100, 4), 0)

	tests := []struct {
		name   string
		in     *endless
		record int64 // bytes per repeat
	}{
		{"pcap", &endless{header: file[:24], records: file[24:], limit: 256 << 20}, int64(len(file) - 24)},
		{"pcapng", &endless{header: ngHeader, records: w.b, limit: 64 << 20}, int64(len(w.b))},
	}
	for _, tt := range tests {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		r, err := NewReader(tt.name, tt.in)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for {
			_, err := r.Next()
			if err != nil {
				// The stream stops mid-record unless it divides evenly.
				if err != io.EOF && !isTruncated(err) {
					t.Fatalf("%s: after %d packets: %v", tt.name, n, err)
				}
				break
			}
			n++
		}
		runtime.ReadMemStats(&after)
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 2*bufSize {
			t.Errorf("%s: allocated %d bytes reading %d MiB (%d packets); want one %d-byte buffer", tt.name, alloc, tt.in.limit>>20, n, bufSize)
		}
		if want := int(3 * (tt.in.limit - int64(len(tt.in.header))) / tt.record); tt.name == "pcap" && n < want-3 {
			t.Errorf("%s: read %d packets, want about %d", tt.name, n, want)
		}
		if want := int((tt.in.limit - int64(len(tt.in.header))) / tt.record); tt.name == "pcapng" && n != want {
			t.Errorf("%s: read %d packets, want %d", tt.name, n, want)
		}
		t.Logf("%s: %d packets from %d MiB, %d bytes allocated", tt.name, n, tt.in.limit>>20, after.TotalAlloc-before.TotalAlloc)
	}
}

func isTruncated(err error) bool { return errors.Is(err, ErrTruncated) }
