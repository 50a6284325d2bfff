package classify

import "github.com/espy-dpi/espy/policy"

// filterTables is how many tables the prefilter tracks: one bit each in a
// uint32. Tables past it (only policies of very many shapes have them) are
// always probed.
const filterTables = 32

// addrBits is how many leading bits of an IPv4 address index the address
// filters.
const addrBits = 12

// addrSlot maps an address to its filter slot: the leading addrBits bits
// of an IPv4 address (the address's bits 32-addrBits..31; IPv6 addresses
// land on the bits at the same place, which is just as exact).
func addrSlot(a policy.U128) int { return int(a.Lo>>(32-addrBits)) & (1<<addrBits - 1) }

// portSlots is the size of a port's filter table: ports below 1024 have a
// slot each, the rest share one slot per 64 ports. Exact well-known ports
// are what separates tables; high ports mostly come in wide ranges.
const portSlots = 1024 + 1024

// portSlot has no branch: whether a packet's port is below 1024 is a
// coin toss on real traffic (source ports), and a branch on it
// mispredicts half the time.
func portSlot(v uint16) int {
	low := (int(v) - 1024) >> 63 // all ones when v < 1024
	return int(v)&low | (1024+int(v>>6))&^low
}

// prefilter maps each of five packet fields to the set of tables (bit i:
// the classifier's i-th table in lookup order) holding an item that
// accepts that field's value. A table is probed only when all five agree,
// which spares most probes that would miss: on ClassBench ipc1_10K it cuts
// 5.6 probes a lookup to under 2. It is conservative: an item sets the bit
// for every slot its range touches, and a deleted item's bits stay until
// the next rebuild, so a clear bit always means no item can match.
//
// 49 KiB, small enough to stay in the first- and second-level caches.
type prefilter struct {
	src, dst     [1 << addrBits]uint32
	proto        [256]uint32
	sport, dport [portSlots]uint32
	// packed marks the tables holding compact items only, which no
	// packet outside IPv4 can match.
	packed uint32
}

// candidates returns the tables that may hold an item containing p.
// Classifier.Lookup has it written out in place.
func (f *prefilter) candidates(p *policy.Packet) uint32 {
	cand := f.src[addrSlot(p.Src)] & f.dst[addrSlot(p.Dst)] & f.proto[p.Proto] &
		f.sport[portSlot(p.SPort)] & f.dport[portSlot(p.DPort)]
	if !isV4(p) {
		cand &^= f.packed
	}
	return cand
}

// add sets bit for every slot x's ranges touch.
func (f *prefilter) add(x *item, bit uint32) {
	markAddrs(&f.src, x.src, x.srcW, bit)
	markAddrs(&f.dst, x.dst, x.dstW, bit)
	for v := int(x.proto); v <= int(x.proto)+int(x.protoW); v++ {
		f.proto[v] |= bit
	}
	markPorts(&f.sport, x.sport, x.sportW, bit)
	markPorts(&f.dport, x.dport, x.dportW, bit)
}

func markPorts(t *[portSlots]uint32, lo, w uint16, bit uint32) {
	for s := portSlot(lo); s <= portSlot(lo+w); s++ {
		t[s] |= bit
	}
}

// wideAddr reports whether an address range of width w may take every
// slot value.
func wideAddr(w policy.U128) bool { return w.Hi != 0 || w.Lo>>(32-addrBits) >= 1<<addrBits-1 }

// markAddrs sets bit for every slot the addresses [lo, lo+w] map to.
func markAddrs(t *[1 << addrBits]uint32, lo, w policy.U128, bit uint32) {
	if wideAddr(w) {
		for i := range t {
			t[i] |= bit
		}
		return
	}
	// The slot bits wrap around within the range at most once.
	a, b := addrSlot(lo), int((lo.Lo+w.Lo)>>(32-addrBits))&(1<<addrBits-1)
	for v := a; ; v = (v + 1) & (1<<addrBits - 1) {
		t[v] |= bit
		if v == b {
			return
		}
	}
}

// rebuild recomputes the filter for tables (in lookup order) from their
// live items. Items that accept every value of a field are common (any
// port, any address); a table's bit is set across such a field once, not
// once per item.
func (f *prefilter) rebuild(tables []*table) {
	*f = prefilter{}
	for i, tb := range tables {
		if i >= filterTables {
			break
		}
		bit := uint32(1) << i
		if tb.packed {
			f.packed |= bit
		}
		var any [5]bool
		tb.eachLive(func(x *item) {
			switch {
			case wideAddr(x.srcW):
				any[0] = true
			default:
				markAddrs(&f.src, x.src, x.srcW, bit)
			}
			switch {
			case wideAddr(x.dstW):
				any[1] = true
			default:
				markAddrs(&f.dst, x.dst, x.dstW, bit)
			}
			if x.protoW == 0xff {
				any[2] = true
			} else {
				for v := int(x.proto); v <= int(x.proto)+int(x.protoW); v++ {
					f.proto[v] |= bit
				}
			}
			if x.sportW == 0xffff {
				any[3] = true
			} else {
				markPorts(&f.sport, x.sport, x.sportW, bit)
			}
			if x.dportW == 0xffff {
				any[4] = true
			} else {
				markPorts(&f.dport, x.dport, x.dportW, bit)
			}
		})
		fill := func(t []uint32, all bool) {
			if all {
				for j := range t {
					t[j] |= bit
				}
			}
		}
		fill(f.src[:], any[0])
		fill(f.dst[:], any[1])
		fill(f.proto[:], any[2])
		fill(f.sport[:], any[3])
		fill(f.dport[:], any[4])
	}
}
