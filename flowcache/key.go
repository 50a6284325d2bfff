package flowcache

import (
	"net/netip"

	"github.com/espy-dpi/espy/packet"
)

// Key identifies a flow: one SA between two outer addresses. IPv4 addresses
// are stored in the first four bytes of Src and Dst.
type Key struct {
	Family uint8 // 4 or 6
	_      [3]byte
	SPI    uint32
	Src    [16]byte
	Dst    [16]byte
}

// KeyOf returns the key of an ESP packet.
func KeyOf(p *packet.Packet) Key {
	k := Key{SPI: p.SPI()}
	if p.Src.Is4() {
		k.Family = 4
		s, d := p.Src.As4(), p.Dst.As4()
		copy(k.Src[:], s[:])
		copy(k.Dst[:], d[:])
	} else {
		k.Family = 6
		k.Src, k.Dst = p.Src.As16(), p.Dst.As16()
	}
	return k
}

// SrcAddr returns the outer source address.
func (k Key) SrcAddr() netip.Addr { return k.addr(&k.Src) }

// DstAddr returns the outer destination address.
func (k Key) DstAddr() netip.Addr { return k.addr(&k.Dst) }

func (k Key) addr(a *[16]byte) netip.Addr {
	if k.Family == 4 {
		return netip.AddrFrom4([4]byte(a[:4]))
	}
	return netip.AddrFrom16(*a)
}

// NewKey returns the key of the SA with spi from src to dst.
func NewKey(src, dst netip.Addr, spi uint32) Key {
	k := Key{SPI: spi, Family: 6}
	if src.Is4() {
		k.Family = 4
		s, d := src.As4(), dst.As4()
		copy(k.Src[:], s[:])
		copy(k.Dst[:], d[:])
		return k
	}
	k.Src, k.Dst = src.As16(), dst.As16()
	return k
}
