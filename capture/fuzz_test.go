package capture

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"testing/iotest"
)

// fuzzSeeds are written to testdata/fuzz/FuzzReader by go test -update:
// valid captures of each kind and a few broken ones.
func fuzzSeeds() map[string][]byte {
	golden := goldenCaptures()
	ng := ngBase(0).b
	pcap := buildPcap(le, 0xa1b2c3d4, 65535, 1, pcapRec{data: frame(60, 1)}, pcapRec{data: frame(20, 2)})
	return map[string][]byte{
		"valid_pcap_nano_be":    golden["nano_be.pcap"],
		"valid_pcapng_sections": golden["two_sections.pcapng"],
		"valid_pcap_le":         pcap,
		"valid_pcapng_le":       ng,
		"pcap_caplen_huge":      putU32(pcap, 24+8, le, 0xffffffff),
		"pcap_truncated":        pcap[:70],
		"pcapng_bad_bom":        putU32(ng, 8, le, 0x01020304),
		"pcapng_huge_block":     putU32(ng, 160+4, le, 0xfffffff0),
		"pcapng_trailer":        putU32(ng, 160-4, le, 8),
		"pcapng_bad_tsresol":    ngBase(0, (&ngBuilder{o: le}).opt(optTSResol, []byte{0xff})).b,
		"not_capture":           []byte("GET / HTTP/1.1\r\n"),
	}
}

func writeFuzzSeeds(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzReader")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range fuzzSeeds() {
		// go test's corpus encoding of one []byte argument.
		seed := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(seed), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestFuzzSeeds(t *testing.T) {
	if *update {
		writeFuzzSeeds(t)
	}
	for name := range fuzzSeeds() {
		if _, err := os.Stat(filepath.Join("testdata", "fuzz", "FuzzReader", name)); err != nil {
			t.Errorf("seed missing (go test -update): %v", err)
		}
	}
}

// FuzzReader feeds arbitrary bytes to the reader. It must never panic,
// must end in io.EOF or a located *Error within the input, must keep its
// length invariants, and must read the same through one-byte reads as
// through a bytes.Reader, whatever the buffering.
func FuzzReader(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		n1, err1 := fuzzRead(t, data, bytes.NewReader(data))
		n2, err2 := fuzzRead(t, data, iotest.OneByteReader(bytes.NewReader(data)))
		if n1 != n2 || fmt.Sprint(err1) != fmt.Sprint(err2) {
			t.Fatalf("buffering changes the result: %d packets, %v; one byte at a time %d, %v", n1, err1, n2, err2)
		}
	})
}

func fuzzRead(t *testing.T, data []byte, in io.Reader) (int, error) {
	r, err := NewReader("fuzz", in)
	if err != nil {
		checkFuzzError(t, data, err)
		return 0, err
	}
	n, last := 0, int64(-1)
	for {
		p, err := r.Next()
		if err != nil {
			if err != io.EOF {
				checkFuzzError(t, data, err)
			}
			if _, again := r.Next(); again != err {
				t.Fatalf("error not sticky: %v then %v", err, again)
			}
			return n, err
		}
		n++
		// The smallest packet record is 12 bytes (pcapng simple packet block).
		if n > len(data)/12 {
			t.Fatalf("%d packets from %d bytes", n, len(data))
		}
		switch {
		case len(p.Data) != p.CaptureLength:
			t.Fatalf("len(Data) %d != CaptureLength %d", len(p.Data), p.CaptureLength)
		case p.CaptureLength > MaxCaptureLength:
			t.Fatalf("CaptureLength %d over the limit", p.CaptureLength)
		case p.CaptureLength > p.Length:
			t.Fatalf("CaptureLength %d > Length %d", p.CaptureLength, p.Length)
		case r.Offset() <= last || r.Offset()+int64(p.CaptureLength) > int64(len(data)):
			t.Fatalf("Offset() %d after %d, %d-byte packet in %d bytes", r.Offset(), last, p.CaptureLength, len(data))
		}
		last = r.Offset()
	}
}

func checkFuzzError(t *testing.T, data []byte, err error) {
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not an *Error", err, err)
	}
	if e.Offset < 0 || e.Offset > int64(len(data)) {
		t.Fatalf("error offset %d outside %d bytes: %v", e.Offset, len(data), err)
	}
	if !errors.Is(err, ErrEmpty) && !errors.Is(err, ErrNotCapture) && !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrCorruptRecord) {
		t.Fatalf("error matches no sentinel: %v", err)
	}
}
