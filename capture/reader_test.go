package capture

import (
	"bytes"
	"io"
	"testing"
)

// readAll reads every packet, copying Data since it is only valid until
// the next call, and returns them with the error that ended the read.
func readAll(t testing.TB, name string, in io.Reader) ([]Packet, []int64, error) {
	t.Helper()
	r, err := NewReader(name, in)
	if err != nil {
		return nil, nil, err
	}
	var ps []Packet
	var offs []int64
	for {
		p, err := r.Next()
		if err != nil {
			return ps, offs, err
		}
		p.Data = append([]byte(nil), p.Data...)
		ps = append(ps, p)
		offs = append(offs, r.Offset())
	}
}

func TestPcapMagics(t *testing.T) {
	recs := []pcapRec{
		{sec: 1700000000, frac: 123456, data: frame(60, 1)},
		{sec: 1700000001, frac: 999999, data: frame(14, 2), origlen: 1514},
		{sec: 1700000002, frac: 0, data: nil, origlen: 64},
	}
	tests := []struct {
		name  string
		order binaryOrder
		magic uint32
		nano  bool
	}{
		{"micro little-endian", le, 0xa1b2c3d4, false},
		{"micro big-endian", be, 0xa1b2c3d4, false},
		{"nano little-endian", le, 0xa1b23c4d, true},
		{"nano big-endian", be, 0xa1b23c4d, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := buildPcap(tt.order, tt.magic, 65535, uint32(LinkTypeEthernet), recs...)
			r, err := NewReader("m.pcap", bytes.NewReader(file))
			if err != nil {
				t.Fatal(err)
			}
			if r.Format() != "pcap" {
				t.Errorf("Format() = %q, want pcap", r.Format())
			}
			off := int64(24)
			for i, rec := range recs {
				p, err := r.Next()
				if err != nil {
					t.Fatalf("packet %d: %v", i, err)
				}
				ns := int64(rec.frac) * 1000
				if tt.nano {
					ns = int64(rec.frac)
				}
				want := Packet{Data: rec.data, Timestamp: unix(int64(rec.sec), ns), CaptureLength: len(rec.data), Length: len(rec.data), LinkType: LinkTypeEthernet}
				if rec.origlen != 0 {
					want.Length = int(rec.origlen)
				}
				checkPacket(t, i, p, want)
				if r.Offset() != off {
					t.Errorf("packet %d: Offset() = %d, want %d", i, r.Offset(), off)
				}
				off += 16 + int64(len(rec.data))
			}
			if _, err := r.Next(); err != io.EOF {
				t.Fatalf("after last packet: %v, want io.EOF", err)
			}
			if _, err := r.Next(); err != io.EOF {
				t.Fatalf("EOF is not sticky: %v", err)
			}
		})
	}
}

func checkPacket(t *testing.T, i int, got, want Packet) {
	t.Helper()
	if !bytes.Equal(got.Data, want.Data) {
		t.Errorf("packet %d: Data = % x, want % x", i, got.Data, want.Data)
	}
	if !got.Timestamp.Equal(want.Timestamp) {
		t.Errorf("packet %d: Timestamp = %v, want %v", i, got.Timestamp, want.Timestamp)
	}
	if got.CaptureLength != want.CaptureLength || got.Length != want.Length || got.LinkType != want.LinkType {
		t.Errorf("packet %d: caplen %d len %d link %d, want %d %d %d", i,
			got.CaptureLength, got.Length, got.LinkType, want.CaptureLength, want.Length, want.LinkType)
	}
	if len(got.Data) != got.CaptureLength {
		t.Errorf("packet %d: len(Data) = %d, CaptureLength %d", i, len(got.Data), got.CaptureLength)
	}
}

// twoInterfaces builds a pcapng capture in byte order o with interfaces of
// different link types and timestamp resolutions, every packet block kind,
// blocks to skip, and a second section; it returns the packets it holds.
func twoInterfaces(o binaryOrder) ([]byte, []Packet) {
	w := &ngBuilder{o: o}
	tsresol := func(v byte) []byte { return w.opt(optTSResol, []byte{v}) }
	tsoffset := func(sec int64) []byte {
		return w.opt(optTSOffset, o.AppendUint64(nil, uint64(sec)))
	}
	w.shb()
	w.idb(LinkTypeEthernet, 64, w.opt(2, []byte("eth0")))           // default 10^-6
	w.idb(LinkTypeRaw, 0, tsresol(9))                               // 10^-9, no snaplen
	w.idb(LinkTypeLinuxSLL2, 262144, tsresol(0x80|10), tsoffset(7)) // 2^-10, +7 s
	w.epb(0, 1700000000_123456, frame(60, 1), 0)
	w.block(5, make([]byte, 24))                               // interface statistics
	w.block(0xabc1, []byte("block of no known type, skipped")) // unknown
	w.epb(1, 1700000000_987654321, frame(40, 2), 1500, w.opt(2, []byte{1, 0, 0, 0}), w.opt(0, nil))
	w.epb(2, 1700000000<<10|512, frame(33, 3), 0) // .5 s
	w.pb(1, 1700000001_000000001, frame(20, 4))
	w.spb(200, frame(64, 5))       // cut to interface 0's snapshot length
	w.block(4, []byte{0, 0, 0, 0}) // name resolution, empty
	pkts := []Packet{
		{Data: frame(60, 1), Timestamp: unix(1700000000, 123456000), CaptureLength: 60, Length: 60, LinkType: LinkTypeEthernet},
		{Data: frame(40, 2), Timestamp: unix(1700000000, 987654321), CaptureLength: 40, Length: 1500, LinkType: LinkTypeRaw},
		{Data: frame(33, 3), Timestamp: unix(1700000007, 500000000), CaptureLength: 33, Length: 33, LinkType: LinkTypeLinuxSLL2},
		{Data: frame(20, 4), Timestamp: unix(1700000001, 1), CaptureLength: 20, Length: 20, LinkType: LinkTypeRaw},
		{Data: frame(64, 5), CaptureLength: 64, Length: 200, LinkType: LinkTypeEthernet},
	}
	return w.b, pkts
}
