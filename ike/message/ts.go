package message

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// TS is a Traffic Selector payload, TSi or TSr (RFC 7296 section 3.13).
type TS struct {
	Initiator bool // TSi when true, TSr otherwise
	Selectors []Selector
}

// Selector is one traffic selector. Address-range selectors use the
// address and port fields; other types (e.g. TS_SECLABEL) keep their body in
// Data.
type Selector struct {
	TSType    TSType
	IPProto   uint8 // 0 = any
	StartPort uint16
	EndPort   uint16
	StartAddr netip.Addr
	EndAddr   netip.Addr
	Data      []byte // body after the 4-byte selector header, for other types
}

// Type implements Payload.
func (ts *TS) Type() PayloadType {
	if ts.Initiator {
		return PayloadTSi
	}
	return PayloadTSr
}

func (ts *TS) appendBody(b []byte) []byte {
	b = append(b, byte(len(ts.Selectors)), 0, 0, 0)
	for i := range ts.Selectors {
		s := &ts.Selectors[i]
		start := len(b)
		// Byte 1 is the IP protocol for address ranges and is kept as is
		// for other types (reserved for TS_SECLABEL).
		b = append(b, byte(s.TSType), s.IPProto, 0, 0)
		switch s.TSType {
		case TSIPv4AddrRange, TSIPv6AddrRange:
			b = binary.BigEndian.AppendUint16(b, s.StartPort)
			b = binary.BigEndian.AppendUint16(b, s.EndPort)
			b = append(b, s.StartAddr.AsSlice()...)
			b = append(b, s.EndAddr.AsSlice()...)
		default:
			b = append(b, s.Data...)
		}
		binary.BigEndian.PutUint16(b[start+2:], uint16(len(b)-start))
	}
	return b
}

func (ts *TS) decodeBody(b []byte) error {
	if len(b) < 4 {
		return fmt.Errorf("TS header: %w", ErrTruncated)
	}
	count := int(b[0])
	b = b[4:]
	if count == 0 {
		return fmt.Errorf("no traffic selectors: %w", ErrSyntax)
	}
	// The smallest selector has 4 bytes of header.
	if count*4 > len(b) {
		return fmt.Errorf("%d selectors in %d bytes: %w", count, len(b), ErrLength)
	}
	ts.Selectors = make([]Selector, 0, count)
	for i := 0; i < count; i++ {
		if len(b) < 4 {
			return fmt.Errorf("selector %d: %w", i+1, ErrTruncated)
		}
		s := Selector{TSType: TSType(b[0])}
		n := int(binary.BigEndian.Uint16(b[2:4]))
		if n < 4 || n > len(b) {
			return fmt.Errorf("selector %d length %d: %w", i+1, n, ErrLength)
		}
		body := b[4:n:n]
		switch s.TSType {
		case TSIPv4AddrRange, TSIPv6AddrRange:
			alen := 4
			if s.TSType == TSIPv6AddrRange {
				alen = 16
			}
			if len(body) != 4+2*alen {
				return fmt.Errorf("selector %d type %d length %d: %w", i+1, s.TSType, n, ErrLength)
			}
			s.IPProto = b[1]
			s.StartPort = binary.BigEndian.Uint16(body[0:2])
			s.EndPort = binary.BigEndian.Uint16(body[2:4])
			s.StartAddr, _ = netip.AddrFromSlice(body[4 : 4+alen])
			s.EndAddr, _ = netip.AddrFromSlice(body[4+alen:])
		default:
			s.IPProto = b[1]
			s.Data = opt(body)
		}
		ts.Selectors = append(ts.Selectors, s)
		b = b[n:]
	}
	if len(b) != 0 {
		return fmt.Errorf("%d bytes after %d selectors: %w", len(b), count, ErrLength)
	}
	return nil
}

// Contains reports whether s covers all of o (same type and protocol or
// s any, port and address ranges within). Only address-range selectors can
// contain anything.
func (s *Selector) Contains(o *Selector) bool {
	if s.TSType != o.TSType || (s.TSType != TSIPv4AddrRange && s.TSType != TSIPv6AddrRange) {
		return false
	}
	if s.IPProto != 0 && s.IPProto != o.IPProto {
		return false
	}
	return s.StartPort <= o.StartPort && o.EndPort <= s.EndPort &&
		s.StartAddr.Compare(o.StartAddr) <= 0 && o.EndAddr.Compare(s.EndAddr) <= 0
}

// RangePrefixes covers the address range [start, end] with the fewest
// prefixes, at most limit of them; ok is false when it needs more, or when
// start and end are of different families or out of order. Data planes use
// it where a selector's range must become routes or kernel selectors.
func RangePrefixes(start, end netip.Addr, limit int) (ps []netip.Prefix, ok bool) {
	if start.BitLen() != end.BitLen() || start.Compare(end) > 0 {
		return nil, false
	}
	for {
		// The largest prefix starting at start that stays within end.
		bits := start.BitLen()
		for b := start.BitLen() - 1; b >= 0; b-- {
			p := netip.PrefixFrom(start, b)
			if p.Masked().Addr() != start || lastAddr(p).Compare(end) > 0 {
				break
			}
			bits = b
		}
		if len(ps) == limit {
			return nil, false
		}
		p := netip.PrefixFrom(start, bits)
		ps = append(ps, p)
		last := lastAddr(p)
		if last == end {
			return ps, true
		}
		start = last.Next()
	}
}

// lastAddr returns the highest address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}
