// Package bpf compiles an SPD into the map-ready form the XDP program looks
// up (see policy.h): a bounded list of TupleMerge tables, each a BPF hash
// map keyed on packet fields masked to the table's prefix lengths, whose
// hits are small buckets of range records checked exactly. Both loops have
// fixed bounds. It also holds the Go reference implementation of exactly
// that lookup, so tests prove the compiled form answers as the linear
// first-match scan does.
//
// A set that needs more than MaxTables tables, MaxKeys keys, MaxRanges
// records, or more than Bucket candidates under one key fails with
// ErrTooLargeForBPF: its flows are then punted to userspace, never silently
// truncated.
package bpf

import "encoding/binary"

// Layout constants, as in policy.h.
const (
	MaxTables = 32    // ESPY_POLICY_MAX_TABLES
	Bucket    = 7     // ESPY_POLICY_BUCKET
	MaxKeys   = 65536 // ESPY_POLICY_MAX_KEYS
	MaxRanges = 65536 // ESPY_POLICY_MAX_RANGES

	KeySize    = 48  // sizeof(struct espy_policy_key)
	BucketSize = 32  // sizeof(struct espy_policy_bucket)
	RangeSize  = 104 // sizeof(struct espy_policy_range)
	TableSize  = 56  // sizeof(struct espy_policy_table)
	MetaSize   = 24  // sizeof(struct espy_policy_meta)

	// FlagDisjoint marks a set whose ranges never overlap.
	FlagDisjoint = 0x1
	// ActionPunt is the miss action of a set that did not fit.
	ActionPunt = 255
)

// Key is struct espy_policy_key.
type Key struct {
	Table uint32
	Label uint32
	Meta  uint64 // family<<56 | proto<<48 | sport<<32 | dport<<16
	Src   [2]uint64
	Dst   [2]uint64
}

func (k *Key) and(m *Key) Key {
	return Key{Label: k.Label & m.Label, Meta: k.Meta & m.Meta,
		Src: [2]uint64{k.Src[0] & m.Src[0], k.Src[1] & m.Src[1]},
		Dst: [2]uint64{k.Dst[0] & m.Dst[0], k.Dst[1] & m.Dst[1]}}
}

// MarshalBinary returns k as the bytes of struct espy_policy_key in host
// byte order (little-endian: x86-64, arm64).
func (k Key) MarshalBinary() ([]byte, error) {
	b := make([]byte, KeySize)
	le := binary.LittleEndian
	le.PutUint32(b[0:], k.Table)
	le.PutUint32(b[4:], k.Label)
	le.PutUint64(b[8:], k.Meta)
	le.PutUint64(b[16:], k.Src[0])
	le.PutUint64(b[24:], k.Src[1])
	le.PutUint64(b[32:], k.Dst[0])
	le.PutUint64(b[40:], k.Dst[1])
	return b, nil
}

// BucketValue is struct espy_policy_bucket.
type BucketValue struct {
	Count uint32
	Idx   [Bucket]uint32
}

// MarshalBinary returns v as struct espy_policy_bucket.
func (v BucketValue) MarshalBinary() ([]byte, error) {
	b := make([]byte, BucketSize)
	binary.LittleEndian.PutUint32(b, v.Count)
	for i, x := range v.Idx {
		binary.LittleEndian.PutUint32(b[4+4*i:], x)
	}
	return b, nil
}

// Range is struct espy_policy_range.
type Range struct {
	SrcLo, SrcHi, DstLo, DstHi [2]uint64
	LabelLo, LabelHi           uint32
	SPortLo, SPortHi           uint16
	DPortLo, DPortHi           uint16
	FamilyLo, FamilyHi         uint8
	ProtoLo, ProtoHi           uint8
	Action                     uint8
	// Final ends the lookup at a hit on this range: no range of another
	// table with a better priority overlaps it (policy.h).
	Final bool
	Prio  uint32
	Rule  uint32
	SA    uint32
}

// MarshalBinary returns r as struct espy_policy_range.
func (r Range) MarshalBinary() ([]byte, error) {
	b := make([]byte, RangeSize)
	le := binary.LittleEndian
	for i, w := range [8]uint64{r.SrcLo[0], r.SrcLo[1], r.SrcHi[0], r.SrcHi[1], r.DstLo[0], r.DstLo[1], r.DstHi[0], r.DstHi[1]} {
		le.PutUint64(b[8*i:], w)
	}
	le.PutUint32(b[64:], r.LabelLo)
	le.PutUint32(b[68:], r.LabelHi)
	le.PutUint16(b[72:], r.SPortLo)
	le.PutUint16(b[74:], r.SPortHi)
	le.PutUint16(b[76:], r.DPortLo)
	le.PutUint16(b[78:], r.DPortHi)
	b[80], b[81], b[82], b[83], b[84] = r.FamilyLo, r.FamilyHi, r.ProtoLo, r.ProtoHi, r.Action
	if r.Final {
		b[85] = 1
	}
	le.PutUint32(b[88:], r.Prio)
	le.PutUint32(b[92:], r.Rule)
	le.PutUint32(b[96:], r.SA)
	return b, nil
}

// Table is struct espy_policy_table.
type Table struct {
	Mask    Key
	MinPrio uint32
	Keys    uint32
}

// MarshalBinary returns t as struct espy_policy_table.
func (t Table) MarshalBinary() ([]byte, error) {
	b, _ := t.Mask.MarshalBinary()
	b = append(b, make([]byte, TableSize-KeySize)...)
	binary.LittleEndian.PutUint32(b[KeySize:], t.MinPrio)
	binary.LittleEndian.PutUint32(b[KeySize+4:], t.Keys)
	return b, nil
}

// Meta is struct espy_policy_meta.
type Meta struct {
	NTables    uint32
	Flags      uint32
	Keys       uint32
	Ranges     uint32
	MissAction uint8
}

// MarshalBinary returns m as struct espy_policy_meta.
func (m Meta) MarshalBinary() ([]byte, error) {
	b := make([]byte, MetaSize)
	le := binary.LittleEndian
	le.PutUint32(b[0:], m.NTables)
	le.PutUint32(b[4:], m.Flags)
	le.PutUint32(b[8:], m.Keys)
	le.PutUint32(b[12:], m.Ranges)
	b[16] = m.MissAction
	return b, nil
}
