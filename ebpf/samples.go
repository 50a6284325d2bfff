package ebpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/cilium/ebpf/ringbuf"
)

// sampleHeaderLen is sizeof(struct espy_sample): the flow key (44 bytes),
// ifindex, orig_len, cap_len (4 each), l3_off, esp_off (2 each).
const sampleHeaderLen = 60

// ErrSampleTruncated: a perf record shorter than its header says.
var ErrSampleTruncated = errors.New("ebpf: truncated sample record")

// Sample is one frame of an unknown flow sent by the program. Frame points
// into the reader's buffer and is valid until the next Read.
type Sample struct {
	Frame   []byte // the frame from its Ethernet header, at most SnapLen bytes
	OrigLen uint32 // frame length on the wire; > len(Frame) when truncated
	Key     FlowKey
	Ifindex uint32 // ingress interface
	L3Off   uint16 // offset of the outer IP header in Frame
	ESPOff  uint16 // offset of the ESP (or WESP) header in Frame
}

// SampleReader reads samples from the program's ring buffer. It reuses one
// buffer, so reading does not allocate per sample. It is not safe for
// concurrent Read calls. Samples the ring had no room for are counted by
// the program (ExitSampleLost), as they happen.
type SampleReader struct {
	rd  *ringbuf.Reader
	rec ringbuf.Record
}

// NewSampleReader opens the sample stream. There is one ring buffer for all
// CPUs, of Config.SampleRingBytes; only one reader may be open at a time.
func (p *Program) NewSampleReader() (*SampleReader, error) {
	rd, err := ringbuf.NewReader(p.objs.Samples)
	if err != nil {
		return nil, fmt.Errorf("ebpf: sample reader: %w", err)
	}
	return &SampleReader{rd: rd}, nil
}

// Read blocks until a sample arrives, the deadline passes (an error
// wrapping os.ErrDeadlineExceeded) or the reader is closed (an error
// wrapping os.ErrClosed), and fills s. With the deadline in the past it
// returns a sample already in the ring, if any, without blocking.
func (r *SampleReader) Read(s *Sample) error {
	if err := r.rd.ReadInto(&r.rec); err != nil {
		if errors.Is(err, ringbuf.ErrClosed) {
			return fmt.Errorf("ebpf: read sample: %w", os.ErrClosed)
		}
		return fmt.Errorf("ebpf: read sample: %w", err)
	}
	return decodeSample(r.rec.RawSample, s)
}

// Pending returns the bytes of samples in the ring not yet read.
func (r *SampleReader) Pending() int { return r.rd.AvailableBytes() }

func decodeSample(raw []byte, s *Sample) error {
	if len(raw) < sampleHeaderLen {
		return fmt.Errorf("%w: %d bytes", ErrSampleTruncated, len(raw))
	}
	ne := binary.NativeEndian
	k := &s.Key
	k.Family = raw[0]
	k.Encap = raw[1]
	k.Sport = ne.Uint16(raw[2:])
	k.Dport = ne.Uint16(raw[4:])
	k.Pad = ne.Uint16(raw[6:])
	k.Spi = ne.Uint32(raw[8:])
	copy(k.Src[:], raw[12:28])
	copy(k.Dst[:], raw[28:44])
	s.Ifindex = ne.Uint32(raw[44:])
	s.OrigLen = ne.Uint32(raw[48:])
	capLen := ne.Uint32(raw[52:])
	s.L3Off = ne.Uint16(raw[56:])
	s.ESPOff = ne.Uint16(raw[58:])
	if uint64(capLen) > uint64(len(raw)-sampleHeaderLen) {
		return fmt.Errorf("%w: cap_len %d, %d bytes follow", ErrSampleTruncated, capLen, len(raw)-sampleHeaderLen)
	}
	s.Frame = raw[sampleHeaderLen : sampleHeaderLen+int(capLen)]
	return nil
}

// SetDeadline makes pending and future Reads return after t; the zero time
// means no deadline.
func (r *SampleReader) SetDeadline(t time.Time) { r.rd.SetDeadline(t) }

// Close stops the reader; a blocked Read returns.
func (r *SampleReader) Close() error {
	if err := r.rd.Close(); err != nil {
		return fmt.Errorf("ebpf: close sample reader: %w", err)
	}
	return nil
}
