package ebpf

import (
	"fmt"
	"net/netip"
	"structs"
)

// Values of FlowKey.Encap, the program's enum espy_encap. They are untyped
// so that FlowKey stays field-for-field identical to the generated type.
const (
	EncapNone    = 0 // ESP over IP, protocol 50
	EncapUDP     = 1 // ESP in UDP, RFC 3948
	EncapTCP     = 2 // ESP in TCP, RFC 8229; reserved, the program does not parse it
	EncapWESP    = 3 // WESP over IP, protocol 141, RFC 5840
	EncapWESPUDP = 4 // WESP in UDP behind the 0x00000002 marker
)

// FlowKey identifies one ESP SA on the wire. It has the layout of the
// program's struct espy_flow_key and converts to and from the generated type.
// Ports and SPI are host-order numbers; addresses are network-order bytes,
// IPv4 in the first four bytes of Src and Dst.
type FlowKey struct {
	_      structs.HostLayout
	Family uint8  // 4 or 6
	Encap  uint8  // EncapNone, EncapUDP, …
	Sport  uint16 // zero unless Encap is UDP-based
	Dport  uint16
	Pad    uint16 // must be zero
	Spi    uint32
	Src    [16]byte
	Dst    [16]byte
}

// NewFlowKey builds the key of an ESP SA. Ports are ignored for encapsulations
// that are not in UDP, so that the key matches what the program builds.
func NewFlowKey(src, dst netip.Addr, spi uint32, encap uint8, sport, dport uint16) (FlowKey, error) {
	k := FlowKey{Encap: encap, Spi: spi}
	var err error
	if k.Family, err = putAddrs(&k.Src, &k.Dst, src, dst); err != nil {
		return FlowKey{}, fmt.Errorf("ebpf: flow key: %w", err)
	}
	if encap == EncapUDP || encap == EncapWESPUDP || encap == EncapTCP {
		k.Sport, k.Dport = sport, dport
	}
	return k, nil
}

// SrcAddr returns the source address.
func (k FlowKey) SrcAddr() netip.Addr { return addrOf(k.Family, k.Src) }

// DstAddr returns the destination address.
func (k FlowKey) DstAddr() netip.Addr { return addrOf(k.Family, k.Dst) }

// String formats the key as "src:sport > dst:dport spi 0x… encap".
func (k FlowKey) String() string {
	return fmt.Sprintf("%s:%d > %s:%d spi 0x%08x encap %d", k.SrcAddr(), k.Sport, k.DstAddr(), k.Dport, k.Spi, k.Encap)
}

// Values of Verdict.Kind (enum espy_verdict_kind).
const (
	VerdictUnknown   = 0 // treated like a missing verdict: sampled
	VerdictNull      = 1 // ESP-NULL: the program opens it
	VerdictEncrypted = 2
)

// Values of Verdict.Mode (enum espy_mode). With ModeUnknown the program
// infers the mode per packet: a trailer next header of 4 or 41 means tunnel.
const (
	ModeUnknown   = 0
	ModeTunnel    = 1
	ModeTransport = 2
)

// Action is what the program does with a packet of a decided flow.
type Action uint8

// Actions. ActionDefault means "the configured default" where a per-flow or
// per-rule action is optional.
const (
	ActionDefault Action = 0
	ActionPass    Action = 1
	ActionDrop    Action = 2
	ActionCount   Action = 3 // pass, counted under its own exit reason
)

// String returns the action's name.
func (a Action) String() string {
	switch a {
	case ActionDefault:
		return "default"
	case ActionPass:
		return "pass"
	case ActionDrop:
		return "drop"
	case ActionCount:
		return "count"
	}
	return fmt.Sprintf("action(%d)", uint8(a))
}

// Verdict is the value of the verdict map, with the layout of struct
// espy_verdict. Slot is managed by [Program.SetVerdict]; callers leave it zero.
type Verdict struct {
	_               structs.HostLayout
	Kind            uint8  // VerdictNull, VerdictEncrypted
	IcvLen          uint8  // ICV bytes at the end of the ESP packet
	IvLen           uint8  // IV bytes after the 8-byte ESP header
	Mode            uint8  // ModeUnknown, ModeTunnel, ModeTransport
	ActionEncrypted uint8  // Action for encrypted flows; ActionDefault = Config
	Flags           uint8  // reserved, zero
	Pad             uint16 // zero
	PolicyHandle    uint32 // opaque to the program: userspace's SPD entry
	Generation      uint32 // opaque to the program: userspace's verdict generation
	Slot            uint32 // per-flow counter slot, set by SetVerdict
}

// InnerKey is an exact inner 5-tuple, the key of the inner-policy map
// (struct espy_inner_key). Ports are zero for protocols without ports and
// for non-first inner fragments.
type InnerKey struct {
	_      structs.HostLayout
	Family uint8
	Proto  uint8
	Sport  uint16
	Dport  uint16
	Pad    uint16
	Src    [16]byte
	Dst    [16]byte
}

// NewInnerKey builds an inner 5-tuple key.
func NewInnerKey(proto uint8, src, dst netip.Addr, sport, dport uint16) (InnerKey, error) {
	k := InnerKey{Proto: proto, Sport: sport, Dport: dport}
	var err error
	if k.Family, err = putAddrs(&k.Src, &k.Dst, src, dst); err != nil {
		return InnerKey{}, fmt.Errorf("ebpf: inner key: %w", err)
	}
	return k, nil
}

// InnerRule is the value of the inner-policy map (struct espy_inner_rule).
type InnerRule struct {
	_      structs.HostLayout
	Action uint8 // an Action, never ActionDefault in a stored rule
	Pad    [3]uint8
	RuleId uint32 // opaque to the program
	Hits   uint64 // packets that matched; maintained by the program
}

func putAddrs(s, d *[16]byte, src, dst netip.Addr) (uint8, error) {
	switch {
	case src.Is4() && dst.Is4():
		a, b := src.As4(), dst.As4()
		copy(s[:], a[:])
		copy(d[:], b[:])
		return 4, nil
	case src.Is6() && dst.Is6() && !src.Is4In6() && !dst.Is4In6():
		*s, *d = src.As16(), dst.As16()
		return 6, nil
	}
	return 0, fmt.Errorf("addresses %v and %v are not both IPv4 or both IPv6", src, dst)
}

func addrOf(family uint8, b [16]byte) netip.Addr {
	if family == 4 {
		return netip.AddrFrom4([4]byte(b[:4]))
	}
	return netip.AddrFrom16(b)
}

// Conversions the compiler checks: the Go types must keep the generated layouts.
var (
	_ = bpfEspyFlowKey(FlowKey{})
	_ = bpfEspyVerdict(Verdict{})
	_ = bpfEspyInnerKey(InnerKey{})
	_ = bpfEspyInnerRule(InnerRule{})
)
