package capture

import (
	"encoding/binary"
	"time"
)

// This file builds captures byte by byte for the tests, so that each field
// is set on purpose rather than by the code under test.

type pcapRec struct {
	sec, frac uint32
	data      []byte
	origlen   uint32 // 0 means len(data)
}

// buildPcap writes a classic pcap file. magic is the host-order magic
// (0xa1b2c3d4 or 0xa1b23c4d), written in order o.
func buildPcap(o binaryOrder, magic, snaplen, link uint32, recs ...pcapRec) []byte {
	b := o.AppendUint32(nil, magic)
	b = o.AppendUint16(b, 2)
	b = o.AppendUint16(b, 4)
	b = o.AppendUint32(b, 0) // thiszone
	b = o.AppendUint32(b, 0) // sigfigs
	b = o.AppendUint32(b, snaplen)
	b = o.AppendUint32(b, link)
	for _, r := range recs {
		orig := r.origlen
		if orig == 0 {
			orig = uint32(len(r.data))
		}
		b = o.AppendUint32(b, r.sec)
		b = o.AppendUint32(b, r.frac)
		b = o.AppendUint32(b, uint32(len(r.data)))
		b = o.AppendUint32(b, orig)
		b = append(b, r.data...)
	}
	return b
}

// ngBuilder writes pcapng blocks and remembers where each one starts.
type ngBuilder struct {
	o      binaryOrder
	b      []byte
	starts []int
}

func pad4(b []byte) []byte {
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// block appends a block with body padded to 32 bits and both lengths.
func (w *ngBuilder) block(typ uint32, body []byte) *ngBuilder {
	body = pad4(append([]byte(nil), body...))
	n := uint32(12 + len(body))
	w.starts = append(w.starts, len(w.b))
	w.b = w.o.AppendUint32(w.b, typ)
	w.b = w.o.AppendUint32(w.b, n)
	w.b = append(w.b, body...)
	w.b = w.o.AppendUint32(w.b, n)
	return w
}

func (w *ngBuilder) shb() *ngBuilder {
	body := w.o.AppendUint32(nil, byteOrderMagic)
	body = w.o.AppendUint16(body, 1)
	body = w.o.AppendUint16(body, 0)
	body = w.o.AppendUint64(body, ^uint64(0))             // section length unknown
	body = append(body, w.opt(4, []byte("espy test"))...) // shb_userappl
	body = append(body, w.opt(0, nil)...)
	return w.block(blockSHB, body)
}

func (w *ngBuilder) opt(code uint16, v []byte) []byte {
	b := w.o.AppendUint16(nil, code)
	b = w.o.AppendUint16(b, uint16(len(v)))
	return pad4(append(b, v...))
}

func (w *ngBuilder) idb(link uint16, snaplen uint32, opts ...[]byte) *ngBuilder {
	body := w.o.AppendUint16(nil, link)
	body = w.o.AppendUint16(body, 0)
	body = w.o.AppendUint32(body, snaplen)
	for _, o := range opts {
		body = append(body, o...)
	}
	if len(opts) > 0 {
		body = append(body, w.opt(0, nil)...)
	}
	return w.block(blockIDB, body)
}

func (w *ngBuilder) epb(id uint32, ts uint64, data []byte, origlen uint32, opts ...[]byte) *ngBuilder {
	if origlen == 0 {
		origlen = uint32(len(data))
	}
	body := w.o.AppendUint32(nil, id)
	body = w.o.AppendUint32(body, uint32(ts>>32))
	body = w.o.AppendUint32(body, uint32(ts))
	body = w.o.AppendUint32(body, uint32(len(data)))
	body = w.o.AppendUint32(body, origlen)
	body = pad4(append(body, data...))
	for _, o := range opts {
		body = append(body, o...)
	}
	return w.block(blockEPB, body)
}

func (w *ngBuilder) pb(id uint16, ts uint64, data []byte) *ngBuilder {
	body := w.o.AppendUint16(nil, id)
	body = w.o.AppendUint16(body, 0) // drops
	body = w.o.AppendUint32(body, uint32(ts>>32))
	body = w.o.AppendUint32(body, uint32(ts))
	body = w.o.AppendUint32(body, uint32(len(data)))
	body = w.o.AppendUint32(body, uint32(len(data)))
	return w.block(blockPB, append(body, data...))
}

func (w *ngBuilder) spb(origlen uint32, data []byte) *ngBuilder {
	return w.block(blockSPB, append(w.o.AppendUint32(nil, origlen), data...))
}

// frame returns n bytes that differ from frame to frame.
func frame(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i)
	}
	return b
}

// putU32 overwrites a 32-bit field of a built capture.
func putU32(b []byte, off int, o binary.ByteOrder, v uint32) []byte {
	c := append([]byte(nil), b...)
	o.PutUint32(c[off:], v)
	return c
}

type binaryOrder interface {
	binary.ByteOrder
	binary.AppendByteOrder
}

var (
	le binaryOrder = binary.LittleEndian
	be binaryOrder = binary.BigEndian
)

func unix(sec, nsec int64) time.Time { return time.Unix(sec, nsec).UTC() }
