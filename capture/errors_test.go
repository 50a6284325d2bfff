package capture

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// ngBase is a little-endian pcapng capture: a 48-byte section header at 0,
// an interface description at 48, and enhanced packet blocks of 60-byte
// frames (92 bytes each) at 68 and 160; 252 bytes in all.
func ngBase(snaplen uint32, opts ...[]byte) *ngBuilder {
	w := &ngBuilder{o: le}
	w.shb().idb(LinkTypeEthernet, snaplen, opts...)
	w.epb(0, 1, frame(60, 1), 0).epb(0, 2, frame(60, 2), 0)
	return w
}

func TestErrors(t *testing.T) {
	// A classic pcap with 60-byte frames at 24 and 100; 176 bytes in all.
	pcap := buildPcap(le, 0xa1b2c3d4, 65535, 1, pcapRec{data: frame(60, 1)}, pcapRec{data: frame(60, 2)})
	pcapBE := buildPcap(be, 0xa1b23c4d, 65535, 1, pcapRec{data: frame(60, 1)}, pcapRec{data: frame(60, 2)})
	ng := ngBase(0).b
	w := ngBase(0)
	if got := []int{w.starts[0], w.starts[1], w.starts[2], w.starts[3], len(w.b)}; got[1] != 48 || got[2] != 68 || got[3] != 160 || got[4] != 252 {
		t.Fatalf("ngBase layout changed: %v", got)
	}
	bw := &ngBuilder{o: le}
	noIDB := bw.shb().epb(0, 1, frame(4, 0), 0).b
	sw := &ngBuilder{o: le}
	spbShort := sw.shb().idb(LinkTypeEthernet, 0).spb(200, frame(64, 0)).b
	spbNoIDB := (&ngBuilder{o: le}).shb().spb(4, frame(4, 0)).b
	uw := &ngBuilder{o: le}
	hugeSkip := putU32(uw.shb().block(0x40000bad, make([]byte, 8)).b, 52, le, 0x7ffffff0)
	tinyUnknown := putU32((&ngBuilder{o: le}).shb().block(0xbad, nil).b, 52, le, 8)
	ow := &ngBuilder{o: le}
	optOverrun := ow.shb().idb(LinkTypeEthernet, 0, le.AppendUint16(le.AppendUint16(nil, 2), 100)).b
	badSecondBOM := append(append([]byte(nil), ng...), putU32((&ngBuilder{o: le}).shb().b, 8, le, 0)...)
	ngBE := (&ngBuilder{o: be}).shb().idb(LinkTypeEthernet, 0).epb(0, 1, frame(60, 1), 0).b

	tests := []struct {
		name string
		in   []byte
		want string // Error() with the file named "t"
		is   error
	}{
		{"empty", nil, "offset 0: empty file", ErrEmpty},
		{"text", []byte("hello world\n"), "offset 0: not a pcap or pcapng file (first bytes 68 65 6c 6c)", ErrNotCapture},
		{"short text", []byte("hi"), "offset 0: not a pcap or pcapng file (first bytes 68 69)", ErrNotCapture},
		{"short magic", []byte{0xd4, 0xc3}, "offset 0: truncated magic: 2 of 4 bytes", ErrTruncated},
		{"pcap header cut", pcap[:10], "offset 0: truncated pcap file header: 10 of 24 bytes", ErrTruncated},
		{"pcap version", putU32(pcap, 4, le, 1|4<<16), "offset 0: unsupported pcap version 1.4", ErrNotCapture},
		{"pcap caplen over limit", putU32(pcap, 100+8, le, 0xffffffff), "offset 100 (record 2): captured length 4294967295 exceeds limit 262144", ErrCorruptRecord},
		{"pcap caplen over limit big-endian", putU32(pcapBE, 100+8, be, 262145), "offset 100 (record 2): captured length 262145 exceeds limit 262144", ErrCorruptRecord},
		{"pcap caplen over origlen", putU32(pcap, 100+12, le, 59), "offset 100 (record 2): captured length 60 exceeds original length 59", ErrCorruptRecord},
		{"pcap record header cut", pcap[:100+7], "offset 100 (record 2): truncated record header: 7 of 16 bytes", ErrTruncated},
		{"pcap record cut", pcap[:100+36], "offset 100 (record 2): truncated record: 36 of 76 bytes", ErrTruncated},
		{"pcap record cut big-endian", pcapBE[:24+75], "offset 24 (record 1): truncated record: 75 of 76 bytes", ErrTruncated},

		{"pcapng header cut", ng[:5], "offset 0 (record 1): truncated section header block: 5 of 12 bytes", ErrTruncated},
		{"pcapng bad byte-order magic", putU32(ng, 8, le, 0), "offset 0 (record 1): section header block has bad byte-order magic 00 00 00 00", ErrNotCapture},
		{"pcapng version", putU32(ng, 12, le, 2), "offset 0 (record 1): unsupported pcapng version 2.0", ErrNotCapture},
		{"modified pcap", putU32(pcap, 0, le, 0xa1b2cd34), "offset 0: unsupported modified pcap format (magic a1b2cd34); convert it with editcap -F pcap", ErrNotCapture},
		{"pcapng section header short", putU32(ng, 4, le, 24), "offset 0 (record 1): section header block length 24 is shorter than 28", ErrCorruptRecord},
		{"pcapng section header trailer", putU32(ng, 44, le, 52), "offset 0 (record 1): section header block trailing length 52 does not match leading length 48", ErrCorruptRecord},
		{"pcapng section header cut", ng[:30], "offset 0 (record 1): truncated section header block: 30 of 48 bytes", ErrTruncated},
		{"pcapng block length not aligned", putU32(ng, 68+4, le, 93), "offset 68 (record 3): enhanced packet block length 93 is not a multiple of 4", ErrCorruptRecord},
		{"pcapng block too short", putU32(ng, 68+4, le, 16), "offset 68 (record 3): enhanced packet block length 16 is shorter than 32", ErrCorruptRecord},
		{"pcapng unknown block too short", tinyUnknown, "offset 48 (record 2): block of type 0x00000bad length 8 is shorter than 12", ErrCorruptRecord},
		{"pcapng trailer mismatch", putU32(ng, 160-4, le, 1), "offset 68 (record 3): enhanced packet block trailing length 1 does not match leading length 92", ErrCorruptRecord},
		{"pcapng packet before interface", noIDB, "offset 48 (record 2): enhanced packet block names interface 0 but the section has 0", ErrCorruptRecord},
		{"pcapng interface out of range", putU32(ng, 160+8, le, 7), "offset 160 (record 4): enhanced packet block names interface 7 but the section has 1", ErrCorruptRecord},
		{"pcapng caplen over limit", putU32(ng, 68+20, le, 0xffffffff), "offset 68 (record 3): captured length 4294967295 exceeds limit 262144", ErrCorruptRecord},
		{"pcapng caplen over block", putU32(putU32(ng, 68+20, le, 80), 68+24, le, 80), "offset 68 (record 3): captured length 80 overruns enhanced packet block length 92", ErrCorruptRecord},
		{"pcapng caplen over origlen", putU32(ng, 160+24, le, 10), "offset 160 (record 4): captured length 60 exceeds original length 10", ErrCorruptRecord},
		{"pcapng big-endian caplen over limit", putU32(ngBE, 68+20, be, 1<<20), "offset 68 (record 3): captured length 1048576 exceeds limit 262144", ErrCorruptRecord},
		{"pcapng simple packet overruns block", spbShort, "offset 68 (record 3): captured length 200 overruns simple packet block length 80", ErrCorruptRecord},
		{"pcapng simple packet before interface", spbNoIDB, "offset 48 (record 2): simple packet block names interface 0 but the section has 0", ErrCorruptRecord},
		{"pcapng bad tsresol", ngBase(0, w.opt(optTSResol, []byte{20})).b, "offset 48 (record 2): unsupported if_tsresol 0x14", ErrCorruptRecord},
		{"pcapng bad binary tsresol", ngBase(0, w.opt(optTSResol, []byte{0x80 | 64})).b, "offset 48 (record 2): unsupported if_tsresol 0xc0", ErrCorruptRecord},
		{"pcapng tsresol length", ngBase(0, w.opt(optTSResol, []byte{6, 0})).b, "offset 48 (record 2): if_tsresol length 2, want 1", ErrCorruptRecord},
		{"pcapng tsoffset length", ngBase(0, w.opt(optTSOffset, []byte{1, 2, 3, 4})).b, "offset 48 (record 2): if_tsoffset length 4, want 8", ErrCorruptRecord},
		{"pcapng option overrun", optOverrun, "offset 48 (record 2): interface description block option 2 length 100 overruns the block", ErrCorruptRecord},
		{"pcapng interface block over limit", putU32(ng, 48+4, le, 1<<20), "offset 48 (record 2): interface description block length 1048576 exceeds limit 270336", ErrCorruptRecord},
		{"pcapng block header cut", ng[:160+5], "offset 160 (record 4): truncated block header: 5 of 8 bytes", ErrTruncated},
		{"pcapng packet block cut", ng[:160+10], "offset 160 (record 4): truncated enhanced packet block: 10 of 92 bytes", ErrTruncated},
		{"pcapng packet block cut in data", ng[:160+90], "offset 160 (record 4): truncated enhanced packet block: 90 of 92 bytes", ErrTruncated},
		{"pcapng huge unknown block cut", hugeSkip, "offset 48 (record 2): truncated block of type 0x40000bad: 20 of 2147483632 bytes", ErrTruncated},
		{"pcapng second section bad byte-order magic", badSecondBOM, "offset 252 (record 5): section header block has bad byte-order magic 00 00 00 00", ErrCorruptRecord},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := readAll(t, "t", bytes.NewReader(tt.in))
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v (%T), want *Error", err, err)
			}
			if want := "capture: t: " + tt.want; err.Error() != want {
				t.Errorf("error\n got %s\nwant %s", err, want)
			}
			if !errors.Is(err, tt.is) {
				t.Errorf("errors.Is(%v, %v) is false", err, tt.is)
			}
			for _, other := range []error{ErrEmpty, ErrNotCapture, ErrTruncated, ErrCorruptRecord} {
				if other != tt.is && errors.Is(err, other) {
					t.Errorf("error also matches %v", other)
				}
			}
			if strings.ContainsAny(err.Error(), "\r\n") {
				t.Errorf("message is not one line: %q", err)
			}
			if e.File != "t" || e.Offset < 0 || e.Offset > int64(len(tt.in)) {
				t.Errorf("Error fields %+v out of range", *e)
			}
		})
	}
}

// TestAcceptedOddities checks inputs that look wrong but are not errors.
func TestAcceptedOddities(t *testing.T) {
	rec := pcapRec{data: frame(100, 1)}
	tests := []struct {
		name string
		in   []byte
		n    int
		link uint16
	}{
		// A snapshot length of 0 or over the limit says nothing; only the
		// hard cap applies.
		{"pcap snaplen 0", buildPcap(le, 0xa1b2c3d4, 0, 1, rec), 1, 1},
		// Records longer than the declared snapshot length are read, as
		// libpcap and Wireshark read them.
		{"pcap caplen over snaplen", buildPcap(le, 0xa1b2c3d4, 50, 1, rec), 1, 1},
		{"pcap snaplen huge", buildPcap(le, 0xa1b2c3d4, 0xffffffff, 1, rec), 1, 1},
		// Link types are reported, not judged; FCS bits above bit 15 are not the link type.
		{"pcap unknown link type", buildPcap(be, 0xa1b2c3d4, 0, 0xbeef, rec), 1, 0xbeef},
		{"pcap link type with FCS bits", buildPcap(le, 0xa1b2c3d4, 0, 0x1<<28|0x1<<26|uint32(LinkTypeRaw), rec), 1, LinkTypeRaw},
		{"pcap header only", buildPcap(le, 0xa1b2c3d4, 65535, 1), 0, 0},
		{"pcapng section only", (&ngBuilder{o: be}).shb().b, 0, 0},
		{"pcapng interface only", (&ngBuilder{o: le}).shb().idb(LinkTypeEthernet, 0).b, 0, 0},
		{"pcapng zero-length packet", (&ngBuilder{o: le}).shb().idb(999, 0).epb(0, 0, nil, 60).b, 1, 999},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ps, _, err := readAll(t, "t", bytes.NewReader(tt.in))
			if err != io.EOF || len(ps) != tt.n {
				t.Fatalf("%d packets, %v; want %d, io.EOF", len(ps), err, tt.n)
			}
			if tt.n > 0 && ps[0].LinkType != tt.link {
				t.Errorf("LinkType = %d, want %d", ps[0].LinkType, tt.link)
			}
		})
	}
}

func TestTooManyInterfaces(t *testing.T) {
	w := &ngBuilder{o: le}
	w.shb()
	for range MaxInterfaces + 1 {
		w.idb(LinkTypeEthernet, 0)
	}
	_, _, err := readAll(t, "t", bytes.NewReader(w.b))
	want := "capture: t: offset 1310768 (record 65538): more than 65536 interfaces in section"
	if err == nil || err.Error() != want || !errors.Is(err, ErrCorruptRecord) {
		t.Errorf("got %v\nwant %s", err, want)
	}
}

// TestReadError checks that a failure of the underlying reader is passed
// on, located, and not mistaken for truncation.
func TestReadError(t *testing.T) {
	boom := errors.New("boom")
	pcap := buildPcap(le, 0xa1b2c3d4, 65535, 1, pcapRec{data: frame(60, 1)})
	in := io.MultiReader(bytes.NewReader(pcap[:50]), iotest.ErrReader(boom))
	_, _, err := readAll(t, "t", in)
	if want := "capture: t: offset 24 (record 1): read record: boom"; err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
	if !errors.Is(err, boom) || errors.Is(err, ErrTruncated) {
		t.Errorf("errors.Is: boom %v, ErrTruncated %v", errors.Is(err, boom), errors.Is(err, ErrTruncated))
	}
	_, err = NewReader("t", iotest.ErrReader(boom))
	if want := "capture: t: offset 0: read magic: boom"; err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
}

// TestStickyError checks that Next keeps returning the first error.
func TestStickyError(t *testing.T) {
	pcap := buildPcap(le, 0xa1b2c3d4, 65535, 1, pcapRec{data: frame(60, 1)}, pcapRec{data: frame(60, 2)})
	r, err := NewReader("t", bytes.NewReader(putU32(pcap, 100+8, le, 1<<30)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	_, err1 := r.Next()
	_, err2 := r.Next()
	if err1 == nil || err1 != err2 {
		t.Errorf("second error %v, then %v", err1, err2)
	}
}

func TestErrorFileName(t *testing.T) {
	e := &Error{File: "a\nb.pcap", Offset: 3, Record: 1, Err: ErrTruncated}
	if got, want := e.Error(), `capture: "a\nb.pcap": offset 3 (record 1): truncated capture`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}
