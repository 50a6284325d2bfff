package capture

import (
	"io"
	"time"
)

const (
	pcapFileHeaderLen   = 24
	pcapRecordHeaderLen = 16
)

// readFileHeader reads the 24-byte classic pcap header; the magic has
// already set the byte order and timestamp unit.
func (r *Reader) readFileHeader() error {
	h, err := r.peek(pcapFileHeaderLen, 0, "pcap file header", pcapFileHeaderLen)
	if err != nil {
		return err
	}
	major, minor := r.u16(h[4:6]), r.u16(h[6:8])
	if major != 2 {
		// libpcap reads 2.x only; anything else is not a file we understand.
		return r.fail(0, 0, faultf(ErrNotCapture, "unsupported pcap version %d.%d", major, minor))
	}
	r.snaplen = r.u32(h[16:20])
	// The upper bits of the link-type field carry FCS information, not the type.
	r.linkType = uint16(r.u32(h[20:24]))
	r.br.Discard(pcapFileHeaderLen)
	r.off = pcapFileHeaderLen
	return nil
}

// nextRecord reads one classic pcap record, returning Data in place in the
// read buffer.
func (r *Reader) nextRecord() (Packet, error) {
	start := r.off
	r.record++
	h, err := r.br.Peek(pcapRecordHeaderLen)
	if len(h) == 0 && err == io.EOF {
		r.record--
		return Packet{}, io.EOF
	}
	if len(h) < pcapRecordHeaderLen {
		return Packet{}, r.readError(err, start, "record header", int64(len(h)), pcapRecordHeaderLen)
	}
	sec, frac := r.u32(h[0:4]), r.u32(h[4:8])
	caplen, origlen := r.u32(h[8:12]), r.u32(h[12:16])
	if err := r.checkLengths(start, caplen, origlen, r.snaplen); err != nil {
		return Packet{}, err
	}
	n := pcapRecordHeaderLen + int(caplen)
	rec, err := r.peek(n, start, "record", int64(n))
	if err != nil {
		return Packet{}, err
	}
	// rec stays valid after Discard: the buffer only moves on the next read.
	r.br.Discard(n)
	r.off += int64(n)
	r.start = start
	ns := int64(frac)
	if !r.nano {
		ns *= 1000
	}
	return Packet{
		Data:          rec[pcapRecordHeaderLen:n:n],
		Timestamp:     time.Unix(int64(sec), ns).UTC(),
		CaptureLength: int(caplen),
		Length:        int(origlen),
		LinkType:      r.linkType,
	}, nil
}
