package espsynth

import (
	"encoding/binary"
	"fmt"
	"io"
	"time"
)

// Classic pcap constants (https://www.tcpdump.org/manpages/pcap-savefile.5.html).
const (
	pcapMagicMicros = 0xa1b2c3d4
	pcapSnapLen     = 65535
	linkTypeEther   = 1
)

// pcapWriter writes classic little-endian pcap records. It is written out
// rather than taken from pcapgo so that a record costs one Write and no
// allocation; the tests read the output back with pcapgo.
type pcapWriter struct {
	w   io.Writer
	hdr [16]byte
}

// newPcapWriter writes the file header to w.
func newPcapWriter(w io.Writer) (*pcapWriter, error) {
	var h [24]byte
	binary.LittleEndian.PutUint32(h[0:], pcapMagicMicros)
	binary.LittleEndian.PutUint16(h[4:], 2)
	binary.LittleEndian.PutUint16(h[6:], 4)
	binary.LittleEndian.PutUint32(h[16:], pcapSnapLen)
	binary.LittleEndian.PutUint32(h[20:], linkTypeEther)
	if _, err := w.Write(h[:]); err != nil {
		return nil, fmt.Errorf("espsynth: writing pcap header: %w", err)
	}
	return &pcapWriter{w: w}, nil
}

// writePacket writes one frame captured whole at ts.
func (p *pcapWriter) writePacket(ts time.Time, frame []byte) error {
	us := ts.UnixMicro()
	binary.LittleEndian.PutUint32(p.hdr[0:], uint32(us/1e6))
	binary.LittleEndian.PutUint32(p.hdr[4:], uint32(us%1e6))
	binary.LittleEndian.PutUint32(p.hdr[8:], uint32(len(frame)))
	binary.LittleEndian.PutUint32(p.hdr[12:], uint32(len(frame)))
	if _, err := p.w.Write(p.hdr[:]); err != nil {
		return fmt.Errorf("espsynth: writing pcap record: %w", err)
	}
	if _, err := p.w.Write(frame); err != nil {
		return fmt.Errorf("espsynth: writing pcap record: %w", err)
	}
	return nil
}
