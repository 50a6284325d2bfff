package message

import (
	"encoding/binary"
	"fmt"
)

// SA is the Security Association payload: an ordered list of proposals
// (RFC 7296 section 3.3).
type SA struct {
	Proposals []Proposal
}

// Proposal is one proposal substructure. Num counts from 1; within a
// proposal the transforms of one type are alternatives and the types are
// combined.
type Proposal struct {
	Num        uint8
	Protocol   ProtocolID
	SPI        []byte // empty for IKE in IKE_SA_INIT, 4 bytes for ESP/AH
	Transforms []Transform
}

// Transform is one transform substructure.
type Transform struct {
	Type       TransformType
	ID         uint16
	Attributes []Attribute
}

// Attribute is a transform attribute. TV-format attributes (the only ones
// RFC 7296 defines, Key Length among them) have TV set and use Value; TLV
// ones carry Data.
type Attribute struct {
	Type  uint16 // without the format bit
	TV    bool
	Value uint16
	Data  []byte
}

// KeyLength returns the Key Length attribute of t in bits, or 0.
func (t *Transform) KeyLength() int {
	for _, a := range t.Attributes {
		if a.TV && a.Type == AttrKeyLength {
			return int(a.Value)
		}
	}
	return 0
}

// Type implements Payload.
func (*SA) Type() PayloadType { return PayloadSA }

// Last Substruc values (RFC 7296 3.3.1, 3.3.2): 0 marks the last
// substructure, 2 and 3 announce another proposal or transform.
const (
	proposalHeaderLen  = 8
	transformHeaderLen = 8
	lastSubstruc       = 0
	moreProposals      = 2
	moreTransforms     = 3
)

func (sa *SA) appendBody(b []byte) []byte {
	for i := range sa.Proposals {
		p := &sa.Proposals[i]
		start := len(b)
		last := byte(moreProposals)
		if i == len(sa.Proposals)-1 {
			last = lastSubstruc
		}
		b = append(b, last, 0, 0, 0, p.Num, byte(p.Protocol), byte(len(p.SPI)), byte(len(p.Transforms)))
		b = append(b, p.SPI...)
		for j := range p.Transforms {
			t := &p.Transforms[j]
			tstart := len(b)
			tl := byte(moreTransforms)
			if j == len(p.Transforms)-1 {
				tl = lastSubstruc
			}
			b = append(b, tl, 0, 0, 0, byte(t.Type), 0)
			b = binary.BigEndian.AppendUint16(b, t.ID)
			for _, a := range t.Attributes {
				if a.TV {
					b = binary.BigEndian.AppendUint16(b, 0x8000|a.Type)
					b = binary.BigEndian.AppendUint16(b, a.Value)
				} else {
					b = binary.BigEndian.AppendUint16(b, a.Type&0x7fff)
					b = binary.BigEndian.AppendUint16(b, uint16(len(a.Data)))
					b = append(b, a.Data...)
				}
			}
			binary.BigEndian.PutUint16(b[tstart+2:], uint16(len(b)-tstart))
		}
		binary.BigEndian.PutUint16(b[start+2:], uint16(len(b)-start))
	}
	return b
}

func (sa *SA) decodeBody(b []byte) error {
	if len(b) == 0 {
		return fmt.Errorf("no proposals: %w", ErrSyntax)
	}
	for len(b) > 0 {
		if len(b) < proposalHeaderLen {
			return fmt.Errorf("proposal header: %w", ErrTruncated)
		}
		last := b[0]
		n := int(binary.BigEndian.Uint16(b[2:4]))
		if n < proposalHeaderLen || n > len(b) {
			return fmt.Errorf("proposal length %d of %d: %w", n, len(b), ErrLength)
		}
		if last != lastSubstruc && last != moreProposals {
			return fmt.Errorf("proposal last-substruc %d: %w", last, ErrSyntax)
		}
		var p Proposal
		if err := p.decode(b[:n]); err != nil {
			return fmt.Errorf("proposal %d: %w", len(sa.Proposals)+1, err)
		}
		sa.Proposals = append(sa.Proposals, p)
		b = b[n:]
		if (last == lastSubstruc) != (len(b) == 0) {
			return fmt.Errorf("proposal last-substruc %d with %d bytes left: %w", last, len(b), ErrSyntax)
		}
	}
	return nil
}

func (p *Proposal) decode(b []byte) error {
	p.Num = b[4]
	p.Protocol = ProtocolID(b[5])
	spiSize := int(b[6])
	count := int(b[7])
	b = b[proposalHeaderLen:]
	if spiSize > len(b) {
		return fmt.Errorf("SPI size %d: %w", spiSize, ErrTruncated)
	}
	if spiSize > 0 {
		p.SPI = b[:spiSize:spiSize]
	}
	b = b[spiSize:]
	// Every transform takes at least 8 bytes, so count is checked against
	// the data before anything is allocated for it.
	if count*transformHeaderLen > len(b) {
		return fmt.Errorf("%d transforms in %d bytes: %w", count, len(b), ErrLength)
	}
	p.Transforms = make([]Transform, 0, count)
	for i := 0; i < count; i++ {
		if len(b) < transformHeaderLen {
			return fmt.Errorf("transform %d header: %w", i+1, ErrTruncated)
		}
		last := b[0]
		n := int(binary.BigEndian.Uint16(b[2:4]))
		if n < transformHeaderLen || n > len(b) {
			return fmt.Errorf("transform %d length %d: %w", i+1, n, ErrLength)
		}
		wantLast := byte(moreTransforms)
		if i == count-1 {
			wantLast = lastSubstruc
		}
		if last != wantLast {
			return fmt.Errorf("transform %d last-substruc %d: %w", i+1, last, ErrSyntax)
		}
		t := Transform{Type: TransformType(b[4]), ID: binary.BigEndian.Uint16(b[6:8])}
		attrs := b[transformHeaderLen:n]
		for len(attrs) > 0 {
			if len(attrs) < 4 {
				return fmt.Errorf("transform %d attribute: %w", i+1, ErrTruncated)
			}
			at := binary.BigEndian.Uint16(attrs[0:2])
			if at&0x8000 != 0 {
				t.Attributes = append(t.Attributes, Attribute{Type: at & 0x7fff, TV: true, Value: binary.BigEndian.Uint16(attrs[2:4])})
				attrs = attrs[4:]
				continue
			}
			al := int(binary.BigEndian.Uint16(attrs[2:4]))
			if 4+al > len(attrs) {
				return fmt.Errorf("transform %d attribute length %d: %w", i+1, al, ErrTruncated)
			}
			t.Attributes = append(t.Attributes, Attribute{Type: at, Data: opt(attrs[4 : 4+al : 4+al])})
			attrs = attrs[4+al:]
		}
		p.Transforms = append(p.Transforms, t)
		b = b[n:]
	}
	if len(b) != 0 {
		return fmt.Errorf("%d bytes after %d transforms: %w", len(b), count, ErrLength)
	}
	return nil
}
