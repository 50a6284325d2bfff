package replay

import (
	"encoding/binary"
	"fmt"
	"io"
	"time"

	"github.com/espy-dpi/espy/heuristics"
	"github.com/espy-dpi/espy/packet"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// InnerWriter writes the cleartext of null flows as a pcap of raw IP
// packets (LINKTYPE_RAW): the inner packet in tunnel mode, and in transport
// mode the segment behind an IP header rebuilt from the outer one, so that
// Wireshark, Zeek or Suricata read what the ESP carried.
type InnerWriter struct {
	w   *pcapgo.Writer
	buf []byte
}

// NewInnerWriter writes the pcap file header to w and returns the writer.
func NewInnerWriter(w io.Writer) (*InnerWriter, error) {
	pw := pcapgo.NewWriterNanos(w)
	if err := pw.WriteFileHeader(65535, layers.LinkTypeRaw); err != nil {
		return nil, fmt.Errorf("replay: write inner capture header: %w", err)
	}
	return &InnerWriter{w: pw, buf: make([]byte, 0, 65535+40)}, nil
}

// Write writes the inner packet in of outer packet p, seen at ts.
func (iw *InnerWriter) Write(p *packet.Packet, in *heuristics.Inner, ts int64) error {
	b := iw.buf[:0]
	switch in.NextHeader {
	case 4, 41:
		b = append(b, in.Datagram...)
	default:
		b = rebuildIP(b, p, in)
	}
	if len(b) > 65535 {
		return nil // cannot be a single IP packet; nothing to write
	}
	ci := gopacket.CaptureInfo{Timestamp: time.Unix(0, ts), CaptureLength: len(b), Length: len(b)}
	if err := iw.w.WritePacket(ci, b); err != nil {
		return fmt.Errorf("replay: write inner packet: %w", err)
	}
	return nil
}

// rebuildIP puts an IP header in front of a transport-mode segment: the
// outer header's addresses, TTL or hop limit, and the trailer's protocol.
func rebuildIP(b []byte, p *packet.Packet, in *heuristics.Inner) []byte {
	seg := in.Datagram
	h := p.IPHeader
	if p.IsIPv6() {
		var hdr [40]byte
		hdr[0] = 0x60
		binary.BigEndian.PutUint16(hdr[4:], uint16(len(seg)))
		hdr[6] = in.NextHeader
		hdr[7] = h[7]
		copy(hdr[8:40], h[8:40])
		b = append(b, hdr[:]...)
		return append(b, seg...)
	}
	var hdr [20]byte
	hdr[0] = 0x45
	hdr[1] = h[1]
	binary.BigEndian.PutUint16(hdr[2:], uint16(20+len(seg)))
	copy(hdr[4:6], h[4:6]) // identification
	hdr[8] = h[8]
	hdr[9] = in.NextHeader
	copy(hdr[12:20], h[12:20])
	binary.BigEndian.PutUint16(hdr[10:], ^packet.Fold(packet.Sum(hdr[:], 0)))
	b = append(b, hdr[:]...)
	return append(b, seg...)
}
