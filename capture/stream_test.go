package capture

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// TestTruncatedAtEveryOffset cuts valid captures at every byte. Each cut
// must read the whole records before it and then end in io.EOF (cut on a
// record boundary) or ErrTruncated located at the record that was cut.
func TestTruncatedAtEveryOffset(t *testing.T) {
	pcapRecs := []pcapRec{{data: frame(60, 1)}, {data: nil, origlen: 60}, {data: frame(33, 3), origlen: 99}}
	pcap := buildPcap(le, 0xa1b2c3d4, 65535, 1, pcapRecs...)
	pcapBounds := []int{24, 24 + 76, 24 + 76 + 16, len(pcap)}

	type tcase struct {
		name      string
		file      []byte
		headerEnd int    // end of the header NewReader reads
		bounds    []int  // record ends, in order, from headerEnd
		packetEnd []bool // whether the record ending at bounds[i] is a packet
	}
	tests := []tcase{{"pcap", pcap, 24, pcapBounds, []bool{false, true, true, true}}}
	for _, o := range []binaryOrder{le, be} {
		first, _ := twoInterfaces(o)
		w := &ngBuilder{o: o}
		w.shb().idb(LinkTypeIPv6, 0).epb(0, 5, frame(48, 9), 0)
		file := append(append([]byte(nil), first...), w.b...)
		// The block starts of both sections give every boundary.
		starts := ngStarts(o, file)
		var bounds []int
		var pkts []bool
		for i, s := range starts {
			end := len(file)
			if i+1 < len(starts) {
				end = starts[i+1]
			}
			bounds = append(bounds, end)
			typ := o.Uint32(file[s:])
			pkts = append(pkts, typ == blockEPB || typ == blockPB || typ == blockSPB)
		}
		tests = append(tests, tcase{"pcapng " + o.String(), file, bounds[0], bounds, pkts})
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			whole, _, err := readAll(t, "cut", bytes.NewReader(tt.file))
			if err != io.EOF {
				t.Fatalf("whole file: %v", err)
			}
			for cut := 0; cut <= len(tt.file); cut++ {
				ps, _, err := readAll(t, "cut", bytes.NewReader(tt.file[:cut]))
				// The records wholly inside the cut, and where the next begins.
				n, last := 0, tt.headerEnd
				for i, end := range tt.bounds {
					if end > cut {
						break
					}
					last = end
					if tt.packetEnd[i] {
						n++
					}
				}
				switch {
				case cut == 0:
					if !errors.Is(err, ErrEmpty) {
						t.Fatalf("cut at 0: %v, want ErrEmpty", err)
					}
				case cut < tt.headerEnd:
					var e *Error
					if !errors.As(err, &e) || !errors.Is(err, ErrTruncated) || e.Offset != 0 {
						t.Fatalf("cut at %d, in the header: %v, want ErrTruncated at offset 0", cut, err)
					}
				case cut == last:
					if err != io.EOF {
						t.Fatalf("cut at %d, a record boundary: %v, want io.EOF", cut, err)
					}
				default:
					var e *Error
					if !errors.As(err, &e) || !errors.Is(err, ErrTruncated) || e.Offset != int64(last) {
						t.Fatalf("cut at %d: %v, want ErrTruncated at offset %d", cut, err, last)
					}
				}
				if cut >= tt.headerEnd && len(ps) != n {
					t.Fatalf("cut at %d: %d packets, want %d", cut, len(ps), n)
				}
				for i := range ps {
					checkPacket(t, i, ps[i], whole[i])
				}
			}
		})
	}
}

// ngStarts walks the block lengths of a well-formed pcapng file.
func ngStarts(o binaryOrder, file []byte) []int {
	var starts []int
	for off := 0; off < len(file); off += int(o.Uint32(file[off+4:])) {
		starts = append(starts, off)
	}
	return starts
}

// TestNonSeekable reads through a pipe written in small uneven pieces, as
// stdin delivers a capture, and through readers that return short or
// one-byte reads.
func TestNonSeekable(t *testing.T) {
	ng, _ := twoInterfaces(be)
	pcap := buildPcap(le, 0xa1b23c4d, 65535, 1, pcapRec{data: frame(1500, 1)}, pcapRec{data: frame(60, 2)})
	for name, file := range map[string][]byte{"pcap": pcap, "pcapng": ng} {
		want, wantOffs, err := readAll(t, name, bytes.NewReader(file))
		if err != io.EOF {
			t.Fatal(err)
		}
		readers := map[string]func() io.Reader{
			"pipe": func() io.Reader {
				pr, pw := io.Pipe()
				go func() {
					for b, n := file, 1; len(b) > 0; n = n%13 + 1 {
						n = min(n, len(b))
						pw.Write(b[:n])
						b = b[n:]
					}
					pw.Close()
				}()
				return pr
			},
			"one byte":    func() io.Reader { return iotest.OneByteReader(bytes.NewReader(file)) },
			"half":        func() io.Reader { return iotest.HalfReader(bytes.NewReader(file)) },
			"data+EOF":    func() io.Reader { return iotest.DataErrReader(bytes.NewReader(file)) },
			"small bufio": func() io.Reader { return bufio.NewReaderSize(bytes.NewReader(file), 16) },
		}
		for rname, mk := range readers {
			got, offs, err := readAll(t, name, mk())
			if err != io.EOF || len(got) != len(want) {
				t.Fatalf("%s via %s: %d packets, %v; want %d, io.EOF", name, rname, len(got), err, len(want))
			}
			for i := range want {
				checkPacket(t, i, got[i], want[i])
				if offs[i] != wantOffs[i] {
					t.Errorf("%s via %s: packet %d at %d, want %d", name, rname, i, offs[i], wantOffs[i])
				}
			}
		}
	}
}

// TestDataValidUntilNext checks the zero-copy contract: Data points into
// the read buffer, so the caller must copy what it keeps.
func TestDataValidUntilNext(t *testing.T) {
	pcap := buildPcap(le, 0xa1b2c3d4, 65535, 1, pcapRec{data: frame(60, 1)})
	r, err := NewReader("t", bytes.NewReader(pcap))
	if err != nil {
		t.Fatal(err)
	}
	p, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	if cap(p.Data) != len(p.Data) {
		t.Errorf("cap(Data) = %d, len %d: appending would write over the next record", cap(p.Data), len(p.Data))
	}
	if !bytes.Equal(p.Data, frame(60, 1)) {
		t.Errorf("Data = % x", p.Data)
	}
}
