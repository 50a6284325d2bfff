package esp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/espy-dpi/espy/packet"
)

// Mode is the ESP mode of an SA (RFC 4301 4.1).
type Mode uint8

// Modes.
const (
	Tunnel    Mode = iota // the whole inner IP packet is the payload
	Transport             // the IP header stays outside; its payload is protected
)

func (m Mode) String() string {
	if m == Transport {
		return "transport"
	}
	return "tunnel"
}

// ErrInner: the packet to protect, or the one a payload carries, is not a
// well-formed IP packet for the mode.
var ErrInner = errors.New("malformed inner packet")

// Payload returns what an SA in mode m carries for IP packet ip, with its
// next header. Transport mode supports headers without IPv4 options or
// IPv6 extension headers, which is what a host's own traffic has.
func Payload(m Mode, ip []byte) (payload []byte, nh uint8, err error) {
	if len(ip) < 20 {
		return nil, 0, fmt.Errorf("esp: %d-byte packet: %w", len(ip), ErrInner)
	}
	switch ip[0] >> 4 {
	case 4:
		tl := int(binary.BigEndian.Uint16(ip[2:]))
		if tl < 20 || tl > len(ip) {
			return nil, 0, fmt.Errorf("esp: IPv4 total length %d of %d bytes: %w", tl, len(ip), ErrInner)
		}
		if m == Tunnel {
			return ip[:tl], ProtoIPv4, nil
		}
		if ip[0]&0x0f != 5 {
			return nil, 0, fmt.Errorf("esp: transport mode: IPv4 options: %w", ErrInner)
		}
		if binary.BigEndian.Uint16(ip[6:])&0x3fff != 0 {
			return nil, 0, fmt.Errorf("esp: transport mode: IPv4 fragment: %w", ErrInner)
		}
		return ip[20:tl], ip[9], nil
	case 6:
		if len(ip) < 40 {
			return nil, 0, fmt.Errorf("esp: %d-byte IPv6 packet: %w", len(ip), ErrInner)
		}
		tl := 40 + int(binary.BigEndian.Uint16(ip[4:]))
		if tl > len(ip) {
			return nil, 0, fmt.Errorf("esp: IPv6 payload length %d of %d bytes: %w", tl-40, len(ip), ErrInner)
		}
		if m == Tunnel {
			return ip[:tl], ProtoIPv6, nil
		}
		return ip[40:tl], ip[6], nil
	}
	return nil, 0, fmt.Errorf("esp: IP version %d: %w", ip[0]>>4, ErrInner)
}

// Inner returns the IP packet a decrypted payload stands for. In tunnel
// mode that is the payload itself, checked against nh and trimmed to the
// IP length (dropping any TFC padding). In transport mode an IP header
// from src to dstAddr with protocol nh is written to buf, followed by the
// payload; buf needs 40 bytes more than the payload to avoid allocating.
func Inner(m Mode, buf, payload []byte, nh uint8, src, dstAddr netip.Addr) ([]byte, error) {
	if m == Tunnel {
		var want uint8
		switch {
		case len(payload) >= 20 && payload[0]>>4 == 4:
			want = ProtoIPv4
		case len(payload) >= 40 && payload[0]>>4 == 6:
			want = ProtoIPv6
		}
		if want == 0 || want != nh {
			return nil, fmt.Errorf("esp: tunnel payload with next header %d: %w", nh, ErrInner)
		}
		p, _, err := Payload(Tunnel, payload)
		return p, err
	}
	if src.Is4() != dstAddr.Is4() || !src.IsValid() {
		return nil, fmt.Errorf("esp: transport mode between %v and %v: %w", src, dstAddr, ErrInner)
	}
	if src.Is4() {
		n := 20 + len(payload)
		if n > 65535 {
			return nil, fmt.Errorf("esp: %d-byte IPv4 packet: %w", n, ErrInner)
		}
		buf = grow(buf, n)
		h := buf[:20]
		h[0], h[1] = 0x45, 0
		binary.BigEndian.PutUint16(h[2:], uint16(n))
		binary.BigEndian.PutUint32(h[4:], 0) // ID, flags, fragment offset
		h[8], h[9] = 64, nh
		h[10], h[11] = 0, 0
		s4, d4 := src.As4(), dstAddr.As4()
		copy(h[12:], s4[:])
		copy(h[16:], d4[:])
		binary.BigEndian.PutUint16(h[10:], ^packet.Fold(packet.Sum(h, 0)))
		copy(buf[20:], payload)
		return buf, nil
	}
	if len(payload) > 65535 {
		return nil, fmt.Errorf("esp: %d-byte IPv6 payload: %w", len(payload), ErrInner)
	}
	n := 40 + len(payload)
	buf = grow(buf, n)
	h := buf[:40]
	binary.BigEndian.PutUint32(h, 6<<28)
	binary.BigEndian.PutUint16(h[4:], uint16(len(payload)))
	h[6], h[7] = nh, 64
	s16, d16 := src.As16(), dstAddr.As16()
	copy(h[8:], s16[:])
	copy(h[24:], d16[:])
	copy(buf[40:], payload)
	return buf, nil
}

// grow returns buf resized to n bytes, reusing its array when it can.
func grow(buf []byte, n int) []byte {
	if cap(buf) >= n {
		return buf[:n]
	}
	return make([]byte, n)
}
