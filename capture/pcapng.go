package capture

import (
	"fmt"
	"io"
	"math/bits"
	"time"
)

// pcapng block types (draft-ietf-opsawg-pcapng). Others are skipped.
const (
	blockSHB uint32 = 0x0a0d0d0a // section header; same in both byte orders
	blockIDB uint32 = 1          // interface description
	blockPB  uint32 = 2          // packet (obsolete)
	blockSPB uint32 = 3          // simple packet
	blockEPB uint32 = 6          // enhanced packet
)

const (
	byteOrderMagic = 0x1a2b3c4d
	optEndOfOpt    = 0
	optTSResol     = 9
	optTSOffset    = 14
	// maxDecimalExp is the largest if_tsresol power of ten whose unit
	// still fits a uint64.
	maxDecimalExp = 19
)

var pow10 = [maxDecimalExp + 1]uint64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9,
	1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19}

// iface is what a packet block needs from its interface description.
type iface struct {
	linkType uint16
	snaplen  uint32
	binary   bool  // if_tsresol is a power of two
	exp      uint8 // if_tsresol exponent: units are 2^-exp or 10^-exp s
	offset   int64 // if_tsoffset, seconds added to every timestamp
}

// time converts a pcapng timestamp in the interface's units.
func (f *iface) time(ts uint64) time.Time {
	var sec, ns uint64
	if f.binary {
		sec = ts >> f.exp
		rem := ts & (1<<f.exp - 1)
		hi, lo := bits.Mul64(rem, 1e9)
		ns = lo>>f.exp | hi<<(64-f.exp)
	} else {
		unit := pow10[f.exp]
		sec, ns = ts/unit, ts%unit
		if f.exp <= 9 {
			ns *= pow10[9-f.exp]
		} else {
			ns /= pow10[f.exp-9]
		}
	}
	return time.Unix(int64(sec)+f.offset, int64(ns)).UTC()
}

func blockName(typ uint32) string {
	switch typ {
	case blockSHB:
		return "section header block"
	case blockIDB:
		return "interface description block"
	case blockPB:
		return "packet block"
	case blockSPB:
		return "simple packet block"
	case blockEPB:
		return "enhanced packet block"
	}
	return fmt.Sprintf("block of type 0x%08x", typ)
}

// checkBlockLength rejects a total block length that cannot be right, before
// anything is read or skipped on its word.
func (r *Reader) checkBlockLength(start int64, typ, blen, min uint32) error {
	switch {
	case blen < min:
		return r.fail(start, r.record, faultf(ErrCorruptRecord, "%s length %d is shorter than %d", blockName(typ), blen, min))
	case blen%4 != 0:
		return r.fail(start, r.record, faultf(ErrCorruptRecord, "%s length %d is not a multiple of 4", blockName(typ), blen))
	}
	return nil
}

// checkTrailer compares the trailing copy of the block length with the leading one.
func (r *Reader) checkTrailer(start int64, typ, blen uint32, trailer []byte) error {
	if t := r.u32(trailer); t != blen {
		return r.fail(start, r.record, faultf(ErrCorruptRecord, "%s trailing length %d does not match leading length %d", blockName(typ), t, blen))
	}
	return nil
}

// skipRest consumes the block starting at start up to and including its
// trailing length, streaming, so a block of any size costs no memory.
func (r *Reader) skipRest(start int64, typ, blen uint32) error {
	name := blockName(typ)
	end := start + int64(blen)
	if err := r.discard(end-4-r.off, start, name, int64(blen)); err != nil {
		return err
	}
	t, err := r.peek(4, start, name, int64(blen))
	if err != nil {
		return err
	}
	if err := r.checkTrailer(start, typ, blen, t); err != nil {
		return err
	}
	r.br.Discard(4)
	r.off += 4
	return nil
}

// readSectionHeader reads a section header block at the current offset. It
// sets the byte order for the section and forgets the previous section's
// interfaces. first marks the block that identified the file as pcapng.
func (r *Reader) readSectionHeader(first bool) error {
	const min = 28
	start := r.off
	h, err := r.peek(12, start, "section header block", 12)
	if err != nil {
		return err
	}
	switch bom := h[8:12]; {
	case bom[0] == 0x1a && bom[1] == 0x2b && bom[2] == 0x3c && bom[3] == 0x4d:
		r.be = true
	case bom[0] == 0x4d && bom[1] == 0x3c && bom[2] == 0x2b && bom[3] == 0x1a:
		r.be = false
	default:
		kind := ErrCorruptRecord
		if first {
			kind = ErrNotCapture
		}
		return r.fail(start, r.record, faultf(kind, "section header block has bad byte-order magic % x", bom))
	}
	blen := r.u32(h[4:8])
	if err := r.checkBlockLength(start, blockSHB, blen, min); err != nil {
		return err
	}
	h, err = r.peek(16, start, "section header block", int64(blen))
	if err != nil {
		return err
	}
	if major, minor := r.u16(h[12:14]), r.u16(h[14:16]); major != 1 {
		return r.fail(start, r.record, faultf(ErrNotCapture, "unsupported pcapng version %d.%d", major, minor))
	}
	r.ifaces = r.ifaces[:0]
	return r.skipRest(start, blockSHB, blen)
}

// readInterface reads an interface description block of total length blen.
func (r *Reader) readInterface(start int64, blen uint32) error {
	if blen > bufSize {
		return r.fail(start, r.record, faultf(ErrCorruptRecord, "interface description block length %d exceeds limit %d", blen, bufSize))
	}
	if len(r.ifaces) >= MaxInterfaces {
		return r.fail(start, r.record, faultf(ErrCorruptRecord, "more than %d interfaces in section", MaxInterfaces))
	}
	b, err := r.peek(int(blen), start, "interface description block", int64(blen))
	if err != nil {
		return err
	}
	if err := r.checkTrailer(start, blockIDB, blen, b[blen-4:]); err != nil {
		return err
	}
	f := iface{linkType: r.u16(b[8:10]), snaplen: r.u32(b[12:16]), exp: 6}
	for opts := b[16 : blen-4]; len(opts) >= 4; {
		code, n := r.u16(opts[0:2]), int(r.u16(opts[2:4]))
		if code == optEndOfOpt {
			break
		}
		padded := (n + 3) &^ 3
		if 4+padded > len(opts) {
			return r.fail(start, r.record, faultf(ErrCorruptRecord, "interface description block option %d length %d overruns the block", code, n))
		}
		v := opts[4 : 4+n]
		switch code {
		case optTSResol:
			if n != 1 {
				return r.fail(start, r.record, faultf(ErrCorruptRecord, "if_tsresol length %d, want 1", n))
			}
			f.binary, f.exp = v[0]&0x80 != 0, v[0]&0x7f
			if (f.binary && f.exp > 63) || (!f.binary && f.exp > maxDecimalExp) {
				return r.fail(start, r.record, faultf(ErrCorruptRecord, "unsupported if_tsresol 0x%02x", v[0]))
			}
		case optTSOffset:
			if n != 8 {
				return r.fail(start, r.record, faultf(ErrCorruptRecord, "if_tsoffset length %d, want 8", n))
			}
			f.offset = int64(r.u64(v))
		}
		opts = opts[4+padded:]
	}
	r.ifaces = append(r.ifaces, f)
	r.br.Discard(int(blen))
	r.off += int64(blen)
	return nil
}

// nextBlock reads blocks until a packet block, which it returns.
func (r *Reader) nextBlock() (Packet, error) {
	for {
		start := r.off
		r.record++
		h, err := r.br.Peek(8)
		if len(h) == 0 && err == io.EOF {
			r.record--
			return Packet{}, io.EOF
		}
		if len(h) < 8 {
			return Packet{}, r.readError(err, start, "block header", int64(len(h)), 8)
		}
		typ, blen := r.u32(h[0:4]), r.u32(h[4:8])
		switch typ {
		case blockSHB:
			if err := r.readSectionHeader(false); err != nil {
				return Packet{}, err
			}
		case blockIDB:
			if err := r.checkBlockLength(start, typ, blen, 20); err != nil {
				return Packet{}, err
			}
			if err := r.readInterface(start, blen); err != nil {
				return Packet{}, err
			}
		case blockEPB, blockPB, blockSPB:
			return r.readPacket(start, typ, blen)
		default:
			if err := r.checkBlockLength(start, typ, blen, 12); err != nil {
				return Packet{}, err
			}
			if err := r.skipRest(start, typ, blen); err != nil {
				return Packet{}, err
			}
		}
	}
}

// readPacket reads an enhanced, simple or obsolete packet block.
func (r *Reader) readPacket(start int64, typ, blen uint32) (Packet, error) {
	name := blockName(typ)
	fixed := uint32(28) // block header and fields before the packet data
	if typ == blockSPB {
		fixed = 12
	}
	if err := r.checkBlockLength(start, typ, blen, fixed+4); err != nil {
		return Packet{}, err
	}
	h, err := r.peek(int(fixed), start, name, int64(blen))
	if err != nil {
		return Packet{}, err
	}
	var id, caplen, origlen uint32
	var ts uint64
	switch typ {
	case blockEPB:
		id = r.u32(h[8:12])
	case blockPB:
		id = uint32(r.u16(h[8:10]))
	}
	if id >= uint32(len(r.ifaces)) {
		return Packet{}, r.fail(start, r.record, faultf(ErrCorruptRecord, "%s names interface %d but the section has %d", name, id, len(r.ifaces)))
	}
	f := &r.ifaces[id]
	if typ == blockSPB {
		// The captured length is implied: the original length cut to the
		// interface's snapshot length. The block must hold it.
		origlen = r.u32(h[8:12])
		caplen = origlen
		if f.snaplen != 0 {
			caplen = min(caplen, f.snaplen)
		}
		if caplen > MaxCaptureLength {
			return Packet{}, r.fail(start, r.record, faultf(ErrCorruptRecord, "captured length %d exceeds limit %d", caplen, MaxCaptureLength))
		}
	} else {
		ts = uint64(r.u32(h[12:16]))<<32 | uint64(r.u32(h[16:20]))
		caplen, origlen = r.u32(h[20:24]), r.u32(h[24:28])
		if err := r.checkLengths(start, caplen, origlen, f.snaplen); err != nil {
			return Packet{}, err
		}
	}
	if need := fixed + (caplen+3)&^3 + 4; need > blen {
		return Packet{}, r.fail(start, r.record, faultf(ErrCorruptRecord, "captured length %d overruns %s length %d", caplen, name, blen))
	}
	var data []byte
	end := int(fixed + caplen)
	if blen <= bufSize {
		// The common case: the whole block fits the buffer, so Data can
		// point into it and stay valid until the next read.
		b, err := r.peek(int(blen), start, name, int64(blen))
		if err != nil {
			return Packet{}, err
		}
		if err := r.checkTrailer(start, typ, blen, b[blen-4:]); err != nil {
			return Packet{}, err
		}
		data = b[fixed:end:end]
		r.br.Discard(int(blen))
		r.off += int64(blen)
	} else {
		// Options make the block bigger than the buffer: copy the data out
		// before skipping the rest.
		b, err := r.peek(end, start, name, int64(blen))
		if err != nil {
			return Packet{}, err
		}
		if r.scratch == nil {
			r.scratch = make([]byte, MaxCaptureLength)
		}
		data = r.scratch[:copy(r.scratch, b[fixed:end])]
		r.br.Discard(end)
		r.off += int64(end)
		if err := r.skipRest(start, typ, blen); err != nil {
			return Packet{}, err
		}
	}
	r.start = start
	p := Packet{Data: data, CaptureLength: int(caplen), Length: int(origlen), LinkType: f.linkType}
	if typ != blockSPB {
		p.Timestamp = f.time(ts)
	}
	return p, nil
}
