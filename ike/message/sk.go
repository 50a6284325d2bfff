package message

import (
	"encoding/binary"
	"fmt"
)

// SK is the Encrypted and Authenticated payload (RFC 7296 section 3.14).
// Data is IV | ciphertext | ICV as sent; NextPayload is the type of the
// first payload inside, carried in SK's own generic header.
type SK struct {
	NextPayload PayloadType
	Data        []byte
}

// Type implements Payload.
func (*SK) Type() PayloadType { return PayloadSK }

func (s *SK) appendBody(b []byte) []byte { return append(b, s.Data...) }
func (s *SK) decodeBody(b []byte) error  { s.Data = opt(b); return nil }

// MaxFragments bounds Total Fragments: RFC 7383 leaves it to 16 bits, a
// reassembler must not trust it.
const MaxFragments = 64

// SKF is the Encrypted and Authenticated Fragment payload (RFC 7383 section
// 2.5). NextPayload is set only in fragment 1.
type SKF struct {
	NextPayload PayloadType
	Number      uint16 // 1-based
	Total       uint16
	Data        []byte // IV | ciphertext | ICV
}

// Type implements Payload.
func (*SKF) Type() PayloadType { return PayloadSKF }

func (s *SKF) appendBody(b []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, s.Number)
	b = binary.BigEndian.AppendUint16(b, s.Total)
	return append(b, s.Data...)
}

func (s *SKF) decodeBody(b []byte) error {
	if len(b) < 4 {
		return fmt.Errorf("SKF header: %w", ErrTruncated)
	}
	s.Number = binary.BigEndian.Uint16(b[0:2])
	s.Total = binary.BigEndian.Uint16(b[2:4])
	if s.Number == 0 || s.Total == 0 || s.Number > s.Total {
		return fmt.Errorf("fragment %d of %d: %w", s.Number, s.Total, ErrSyntax)
	}
	if s.Total > MaxFragments {
		return fmt.Errorf("%d fragments: %w", s.Total, ErrTooMany)
	}
	s.Data = opt(b[4:])
	return nil
}
