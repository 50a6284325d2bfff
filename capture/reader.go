package capture

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"time"
)

// MaxCaptureLength is the largest captured length accepted for one packet
// (256 KiB, libpcap's largest snapshot length). A longer record is corrupt.
const MaxCaptureLength = 256 << 10

// MaxInterfaces is the most interfaces one pcapng section may describe;
// it bounds the reader's memory on hostile input.
const MaxInterfaces = 1 << 16

// bufSize holds any pcap record or pcapng packet block of MaxCaptureLength
// with room for headers and a few KiB of options, so that whole records can
// be peeked in place and handed out without a copy.
const bufSize = MaxCaptureLength + 8<<10

// Packet is one captured frame. Data is valid until the next call to Next.
type Packet struct {
	Data          []byte    // the captured bytes; do not keep past Next
	Timestamp     time.Time // UTC; zero for a pcapng simple packet block
	CaptureLength int       // len(Data)
	Length        int       // original length on the wire
	LinkType      uint16    // LINKTYPE_* value of the packet's interface
}

// Reader reads packets from one pcap or pcapng stream. It reads forward
// only, so it works on pipes and stdin, and its memory stays bounded by
// one buffer whatever the size of the capture.
type Reader struct {
	name   string
	br     *bufio.Reader
	ng     bool
	be     bool  // big-endian file (pcapng: current section)
	off    int64 // bytes consumed so far
	start  int64 // offset of the record last returned
	record int   // records read so far, the current one included
	err    error // sticky: once set, Next returns it forever

	// pcap
	nano     bool
	snaplen  uint32
	linkType uint16

	// pcapng
	ifaces  []iface
	scratch []byte // copy of packet data for blocks too big to peek whole
}

var (
	pcapMagicMicro = [4]byte{0xa1, 0xb2, 0xc3, 0xd4}
	pcapMagicNano  = [4]byte{0xa1, 0xb2, 0x3c, 0x4d}
	pcapngMagic    = [4]byte{0x0a, 0x0d, 0x0d, 0x0a}
	// pcapMagicModified is recognised only to be refused clearly.
	pcapMagicModified = [4]byte{0xa1, 0xb2, 0xcd, 0x34}
)

// NewReader detects the format from the first bytes of r and reads the pcap
// file header or the first pcapng section header. name is used in errors.
// r need not be seekable. The Reader buffers it and reads up to 264 KiB
// ahead, so the caller must not read from r itself afterwards.
func NewReader(name string, r io.Reader) (*Reader, error) {
	cr := &Reader{name: name, br: bufio.NewReaderSize(r, bufSize)}
	magic, err := cr.br.Peek(4)
	switch {
	case len(magic) == 0 && err == io.EOF:
		return nil, cr.fail(0, 0, ErrEmpty)
	case len(magic) < 4 && err != io.EOF:
		return nil, cr.fail(0, 0, fmt.Errorf("read magic: %w", err))
	}
	var m [4]byte
	copy(m[:], magic)
	rev := [4]byte{m[3], m[2], m[1], m[0]}
	switch {
	case m == pcapngMagic:
		cr.ng = true
		cr.record = 1
		if err := cr.readSectionHeader(true); err != nil {
			return nil, err
		}
	case m == pcapMagicMicro || m == pcapMagicNano || rev == pcapMagicMicro || rev == pcapMagicNano:
		cr.be = m == pcapMagicMicro || m == pcapMagicNano
		cr.nano = m == pcapMagicNano || rev == pcapMagicNano
		if err := cr.readFileHeader(); err != nil {
			return nil, err
		}
	case m == pcapMagicModified || rev == pcapMagicModified:
		// Kuznetzov's patched libpcap: 24-byte record headers, and
		// variants that cannot be told apart by the magic alone.
		return nil, cr.fail(0, 0, faultf(ErrNotCapture, "unsupported modified pcap format (magic a1b2cd34); convert it with editcap -F pcap"))
	case len(magic) < 4 && isMagicPrefix(magic):
		return nil, cr.fail(0, 0, faultf(ErrTruncated, "truncated magic: %d of 4 bytes", len(magic)))
	default:
		return nil, cr.fail(0, 0, faultf(ErrNotCapture, "not a pcap or pcapng file (first bytes % x)", magic))
	}
	return cr, nil
}

func isMagicPrefix(b []byte) bool {
	for _, m := range [][4]byte{pcapMagicMicro, pcapMagicNano, pcapngMagic} {
		rev := [4]byte{m[3], m[2], m[1], m[0]}
		if string(b) == string(m[:len(b)]) || string(b) == string(rev[:len(b)]) {
			return true
		}
	}
	return false
}

// Next returns the next packet, or io.EOF after the last whole record.
// Any other error is an *Error, and Next returns it again on every later call.
// Next does not allocate.
func (r *Reader) Next() (Packet, error) {
	if r.err != nil {
		return Packet{}, r.err
	}
	var p Packet
	var err error
	if r.ng {
		p, err = r.nextBlock()
	} else {
		p, err = r.nextRecord()
	}
	if err != nil {
		r.err = err
	}
	return p, err
}

// Offset returns the byte offset of the start of the record last returned
// by Next (pcapng: the start of its packet block).
func (r *Reader) Offset() int64 { return r.start }

// Format returns "pcap" or "pcapng".
func (r *Reader) Format() string {
	if r.ng {
		return "pcapng"
	}
	return "pcap"
}

// fail records err as the sticky error, located at offset and record.
func (r *Reader) fail(offset int64, record int, err error) error {
	e := &Error{File: r.name, Offset: offset, Record: record, Err: err}
	r.err = e
	return e
}

// peek returns the next n bytes without consuming them. A short read is
// reported as ErrTruncated naming what was being read, at offset start,
// and how much of its total length in bytes was there.
func (r *Reader) peek(n int, start int64, what string, total int64) ([]byte, error) {
	b, err := r.br.Peek(n)
	if len(b) == n {
		return b, nil
	}
	return nil, r.readError(err, start, what, r.off-start+int64(len(b)), total)
}

// discard consumes n bytes, which need not be buffered, in steps that fit
// an int on any platform.
func (r *Reader) discard(n int64, start int64, what string, total int64) error {
	for n > 0 {
		step := int(min(n, 1<<30))
		d, err := r.br.Discard(step)
		r.off += int64(d)
		n -= int64(d)
		if d < step {
			return r.readError(err, start, what, r.off-start, total)
		}
	}
	return nil
}

// readError turns a short read into an *Error: truncation on EOF, the I/O
// error otherwise. got and want count bytes from start.
func (r *Reader) readError(err error, start int64, what string, got, want int64) error {
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return r.fail(start, r.record, faultf(ErrTruncated, "truncated %s: %d of %d bytes", what, got, want))
	}
	return r.fail(start, r.record, fmt.Errorf("read %s: %w", what, err))
}

func (r *Reader) u16(b []byte) uint16 {
	if r.be {
		return uint16(b[1]) | uint16(b[0])<<8
	}
	return uint16(b[0]) | uint16(b[1])<<8
}

func (r *Reader) u32(b []byte) uint32 {
	if r.be {
		return uint32(b[3]) | uint32(b[2])<<8 | uint32(b[1])<<16 | uint32(b[0])<<24
	}
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

// checkLengths applies the limits every packet record must meet. A captured
// length over the file's snapshot length is accepted, as libpcap and
// Wireshark accept it: some writers (dpkt) declare 1500 and store 1514-byte
// frames, and the hard cap already bounds what a record can ask for.
func (r *Reader) checkLengths(start int64, caplen, origlen, _ uint32) error {
	switch {
	case caplen > MaxCaptureLength:
		return r.fail(start, r.record, faultf(ErrCorruptRecord, "captured length %d exceeds limit %d", caplen, MaxCaptureLength))
	case caplen > origlen:
		return r.fail(start, r.record, faultf(ErrCorruptRecord, "captured length %d exceeds original length %d", caplen, origlen))
	}
	return nil
}

func (r *Reader) u64(b []byte) uint64 {
	if r.be {
		return uint64(r.u32(b[0:4]))<<32 | uint64(r.u32(b[4:8]))
	}
	return uint64(r.u32(b[4:8]))<<32 | uint64(r.u32(b[0:4]))
}
