package capture

import (
	"bytes"
	"fmt"
	"io"
	"testing"
	"testing/iotest"
)

func TestPcapng(t *testing.T) {
	for _, tt := range []struct {
		name  string
		order binaryOrder
	}{{"little-endian", le}, {"big-endian", be}} {
		t.Run(tt.name, func(t *testing.T) {
			file, want := twoInterfaces(tt.order)
			r, err := NewReader("two.pcapng", bytes.NewReader(file))
			if err != nil {
				t.Fatal(err)
			}
			if r.Format() != "pcapng" {
				t.Errorf("Format() = %q, want pcapng", r.Format())
			}
			for i, w := range want {
				p, err := r.Next()
				if err != nil {
					t.Fatalf("packet %d: %v", i, err)
				}
				checkPacket(t, i, p, w)
			}
			if _, err := r.Next(); err != io.EOF {
				t.Fatalf("after last packet: %v, want io.EOF", err)
			}
		})
	}
}

// TestPcapngSections checks that a new section may change the byte order
// and that it forgets the interfaces of the one before.
func TestPcapngSections(t *testing.T) {
	first, want := twoInterfaces(le)
	w := &ngBuilder{o: be}
	w.shb().idb(LinkTypeIPv6, 0).epb(0, 5_000001, frame(48, 9), 0)
	file := append(append([]byte(nil), first...), w.b...)
	want = append(want, Packet{Data: frame(48, 9), Timestamp: unix(5, 1000), CaptureLength: 48, Length: 48, LinkType: LinkTypeIPv6})

	ps, offs, err := readAll(t, "s.pcapng", bytes.NewReader(file))
	if err != io.EOF {
		t.Fatalf("read: %v", err)
	}
	if len(ps) != len(want) {
		t.Fatalf("read %d packets, want %d", len(ps), len(want))
	}
	for i := range want {
		checkPacket(t, i, ps[i], want[i])
	}
	if got, want := offs[len(offs)-1], int64(len(first)+w.starts[2]); got != want {
		t.Errorf("Offset() of last packet = %d, want %d", got, want)
	}

	// Interface 1 of the first section does not exist in the second.
	w = &ngBuilder{o: be}
	w.shb().idb(LinkTypeIPv6, 0).epb(1, 0, frame(4, 0), 0)
	file = append(append([]byte(nil), first...), w.b...)
	_, _, err = readAll(t, "s.pcapng", bytes.NewReader(file))
	// The first section holds 12 blocks; the bad one is the third of the next.
	wantMsg := fmt.Sprintf("capture: s.pcapng: offset %d (record 15): enhanced packet block names interface 1 but the section has 1", len(first)+w.starts[2])
	if err == nil || err.Error() != wantMsg {
		t.Errorf("got %v\nwant %s", err, wantMsg)
	}
}

// TestPcapngTimestampResolutions converts a timestamp at every if_tsresol
// the reader accepts.
func TestPcapngTimestampResolutions(t *testing.T) {
	tests := []struct {
		tsresol byte
		ts      uint64
		sec, ns int64
	}{
		{0, 1700000000, 1700000000, 0},
		{3, 1700000000_250, 1700000000, 250000000},
		{6, 1700000000_000001, 1700000000, 1000},
		{9, 1700000000_123456789, 1700000000, 123456789},
		{12, 1_123456789012, 1, 123456789},
		{19, 1_5000000000000000001, 1, 500000000}, // 1.5e19+1 units of 1e-19 s
		{0x80, 77, 77, 0},
		{0x80 | 1, 3, 1, 500000000},
		{0x80 | 20, 5<<20 | 1<<19, 5, 500000000},
		{0x80 | 30, 1<<30 | 1, 1, 0}, // 2^-30 s is just under 1 ns
		{0x80 | 63, 1<<63 | 1<<62, 1, 500000000},
	}
	for _, tt := range tests {
		for _, o := range []binaryOrder{le, be} {
			w := &ngBuilder{o: o}
			w.shb().idb(LinkTypeEthernet, 0, w.opt(optTSResol, []byte{tt.tsresol})).epb(0, tt.ts, frame(1, 0), 0)
			ps, _, err := readAll(t, "ts.pcapng", bytes.NewReader(w.b))
			if err != io.EOF || len(ps) != 1 {
				t.Fatalf("tsresol %#x: %d packets, %v", tt.tsresol, len(ps), err)
			}
			if want := unix(tt.sec, tt.ns); !ps[0].Timestamp.Equal(want) {
				t.Errorf("tsresol %#x: ts %d is %v, want %v", tt.tsresol, tt.ts, ps[0].Timestamp, want)
			}
		}
	}
}

// TestPcapngBigBlock reads a packet block whose options make it larger
// than the read buffer, the path that copies the data out.
func TestPcapngBigBlock(t *testing.T) {
	w := &ngBuilder{o: le}
	var opts [][]byte
	for n := 0; n <= bufSize; n += 60000 {
		opts = append(opts, w.opt(1, make([]byte, 60000))) // opt_comment
	}
	opts = append(opts, w.opt(0, nil))
	w.shb().idb(LinkTypeEthernet, 0)
	w.epb(0, 1, frame(1000, 7), 0, opts...)
	w.epb(0, 2, frame(100, 8), 0)
	if n := len(w.b) - w.starts[2]; n <= bufSize {
		t.Fatalf("block is only %d bytes", n)
	}
	ps, offs, err := readAll(t, "big.pcapng", iotest.HalfReader(bytes.NewReader(w.b)))
	if err != io.EOF || len(ps) != 2 {
		t.Fatalf("%d packets, %v", len(ps), err)
	}
	checkPacket(t, 0, ps[0], Packet{Data: frame(1000, 7), Timestamp: unix(0, 1000), CaptureLength: 1000, Length: 1000, LinkType: LinkTypeEthernet})
	checkPacket(t, 1, ps[1], Packet{Data: frame(100, 8), Timestamp: unix(0, 2000), CaptureLength: 100, Length: 100, LinkType: LinkTypeEthernet})
	if offs[1] != int64(w.starts[3]) {
		t.Errorf("Offset() = %d, want %d", offs[1], w.starts[3])
	}
}
